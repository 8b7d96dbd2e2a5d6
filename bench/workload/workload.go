package workload

import (
	"math"
	"math/rand/v2"
	"strconv"
)

// Config shapes a stream.
type Config struct {
	Seed      uint64
	Users     int     // distinct users; activity is Zipf-skewed over them
	Merchants int     // distinct merchants; Zipf-skewed
	FraudRate float64 // probability that a transaction starts a fraud burst
	// UniformUsers draws users uniformly instead of Zipf-skewed: no card
	// holder is hot (with the skew, the busiest of 100k users makes 2% of
	// all transactions).
	UniformUsers bool
}

// LookupSeed is what the load harness adds to a workload's seed for the
// stream its lookup keys come from: the same skew, other transactions.
const LookupSeed = 1_000_003

// DefaultConfig is a small city's worth of card holders.
func DefaultConfig() Config {
	return Config{Seed: 1, Users: 10_000, Merchants: 500, FraudRate: 0.002}
}

// Txn is one card transaction, shaped like the default repo's source.
type Txn struct {
	UserID   string
	Merchant string
	Category string
	Country  string
	Amt      float64
	Lat      float64
	Long     float64
	TS       int64 // epoch ms
	IsFraud  int
}

// Country is a place users live and spend in.
type Country struct {
	Code      string
	Lat, Long float64
	Spread    float64 // degrees around the centre where people live
}

// Countries are the places the generator uses.
var Countries = []Country{
	{"US", 39.8, -98.6, 10}, {"GB", 52.5, -1.5, 2}, {"FR", 46.6, 2.4, 3}, {"DE", 51.1, 10.4, 3},
	{"BR", -14.2, -51.9, 8}, {"IN", 21.0, 78.0, 8}, {"JP", 36.2, 138.3, 3}, {"NG", 9.1, 8.7, 4},
}

var categories = []string{"grocery_pos", "gas_transport", "shopping_net", "shopping_pos", "food_dining", "entertainment", "travel", "health_fitness", "misc_net", "home"}

// User is one card holder.
type User struct {
	ID        string
	Country   int
	HomeLat   float64
	HomeLong  float64
	SpendMean float64
}

// Generator produces transactions. It is not safe for concurrent use; give
// each goroutine its own (with its own seed).
type Generator struct {
	cfg       Config
	rng       *rand.Rand
	users     []User
	userZipf  *rand.Zipf
	merchZipf *rand.Zipf
	merchants []string
	burst     struct {
		left    int
		user    int
		country int
		lat     float64
		long    float64
	}
}

// New returns a generator for cfg.
func New(cfg Config) *Generator {
	g := &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	g.users = make([]User, cfg.Users)
	for i := range g.users {
		c := g.rng.IntN(len(Countries))
		ct := Countries[c]
		g.users[i] = User{
			ID:        "user_" + strconv.Itoa(i),
			Country:   c,
			HomeLat:   ct.Lat + (g.rng.Float64()*2-1)*ct.Spread,
			HomeLong:  ct.Long + (g.rng.Float64()*2-1)*ct.Spread,
			SpendMean: 20 + g.rng.ExpFloat64()*60,
		}
	}
	g.merchants = make([]string, cfg.Merchants)
	for i := range g.merchants {
		g.merchants[i] = "merchant_" + strconv.Itoa(i)
	}
	if !cfg.UniformUsers {
		g.userZipf = rand.NewZipf(g.rng, 1.1, 8, uint64(cfg.Users-1))
	}
	g.merchZipf = rand.NewZipf(g.rng, 1.2, 4, uint64(cfg.Merchants-1))
	return g
}

func (g *Generator) user() int {
	if g.userZipf == nil {
		return g.rng.IntN(len(g.users))
	}
	return int(g.userZipf.Uint64())
}

// Users returns the card holders (their homes are the user_profile table).
func (g *Generator) Users() []User { return g.users }

// Next returns the next transaction, stamped ts.
func (g *Generator) Next(ts int64) Txn {
	if g.burst.left == 0 && g.rng.Float64() < g.cfg.FraudRate {
		g.burst.left = 4 + g.rng.IntN(12)
		g.burst.user = g.user()
		g.burst.country = g.rng.IntN(len(Countries))
		ct := Countries[g.burst.country]
		g.burst.lat = ct.Lat + (g.rng.Float64()*2-1)*ct.Spread
		g.burst.long = ct.Long + (g.rng.Float64()*2-1)*ct.Spread
	}
	t := Txn{TS: ts, Merchant: g.merchants[g.merchZipf.Uint64()], Category: categories[g.rng.IntN(len(categories))]}
	if g.burst.left > 0 {
		g.burst.left--
		u := &g.users[g.burst.user]
		t.UserID = u.ID
		t.Country = Countries[g.burst.country].Code
		t.Lat = g.burst.lat + g.rng.NormFloat64()*0.05
		t.Long = g.burst.long + g.rng.NormFloat64()*0.05
		t.Amt = round2(u.SpendMean * (3 + g.rng.ExpFloat64()*5))
		t.IsFraud = 1
		return t
	}
	u := &g.users[g.user()]
	t.UserID = u.ID
	t.Country = Countries[u.Country].Code
	t.Lat = u.HomeLat + g.rng.NormFloat64()*0.2
	t.Long = u.HomeLong + g.rng.NormFloat64()*0.2
	t.Amt = round2(math.Max(0.5, u.SpendMean*g.rng.ExpFloat64()))
	return t
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// AppendJSON appends t as a JSON object of the default repo's transactions
// source.
func (t *Txn) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"user_id":"`...)
	dst = append(dst, t.UserID...)
	dst = append(dst, `","merchant":"`...)
	dst = append(dst, t.Merchant...)
	dst = append(dst, `","category":"`...)
	dst = append(dst, t.Category...)
	dst = append(dst, `","country":"`...)
	dst = append(dst, t.Country...)
	dst = append(dst, `","amt":`...)
	dst = strconv.AppendFloat(dst, t.Amt, 'f', -1, 64)
	dst = append(dst, `,"lat":`...)
	dst = strconv.AppendFloat(dst, t.Lat, 'f', 5, 64)
	dst = append(dst, `,"long":`...)
	dst = strconv.AppendFloat(dst, t.Long, 'f', 5, 64)
	dst = append(dst, `,"is_fraud":`...)
	dst = strconv.AppendInt(dst, int64(t.IsFraud), 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, t.TS, 10)
	return append(dst, '}')
}
