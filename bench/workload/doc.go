// Package workload generates a realistic, seeded card-transaction stream for
// the demo and the load-test harness: skewed user and merchant activity
// (Zipf), users who mostly spend near home in their home country, and bursts
// of fraud (many transactions in a minute, far from home, larger amounts,
// labelled is_fraud=1). The same seed gives the same stream.
package workload
