// Command gendata writes point-in-time training rows for the default fraud
// repo: it replays a seeded synthetic transaction stream through an
// in-process tally node, and for each transaction reads the fraud_detection
// vector exactly as a scoring request would see it (before the transaction
// itself is ingested), then ingests it. Each CSV row is that vector plus the
// transaction's is_fraud label.
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"

	"github.com/tally-ml/tally/bench/workload"
	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

func main() {
	out := flag.String("out", "train.csv", "output CSV")
	rows := flag.Int("rows", 100000, "transactions")
	users := flag.Int("users", 5000, "card holders")
	seed := flag.Uint64("seed", 11, "stream seed")
	flag.Parse()
	if err := run(*out, *rows, *users, *seed); err != nil {
		log.Fatal(err)
	}
}

func run(out string, rows, users int, seed uint64) error {
	repo, err := features.Default()
	if err != nil {
		return err
	}
	repo.Services[0].Model = nil // the model is what we are training
	now := int64(1_790_000_000_000)
	n, err := node.New(repo, node.DefaultConfig(), node.Options{Clock: func() int64 { return now }})
	if err != nil {
		return err
	}
	g := workload.New(workload.Config{Seed: seed, Users: users, Merchants: 300, FraudRate: 0.004})
	profile := []byte("user_id,home_lat,home_long\n")
	for _, u := range g.Users() {
		profile = fmt.Appendf(profile, "%s,%g,%g\n", u.ID, u.HomeLat, u.HomeLong)
	}
	if _, aerr := n.UploadTable("user_profile", node.CSV, profile, false); aerr != nil {
		return aerr
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	var header []string
	// ~20 transactions a second of event time.
	for i := 0; i < rows; i++ {
		now += 50
		tx := g.Next(now)
		body := fmt.Sprintf(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":%q,"merchant":%q,"country":%q},"request_context_map":{"amt":%v,"lat":%v,"long":%v}}}`,
			tx.UserID, tx.Merchant, tx.Country, tx.Amt, tx.Lat, tx.Long)
		resp, aerr := n.GetFeatures(nil, []byte(body))
		if aerr != nil {
			return aerr
		}
		r, err := client.DecodeFeatures(resp)
		if err != nil {
			return err
		}
		if header == nil {
			for _, m := range r.Metadata.Features {
				header = append(header, m.Name)
			}
			w.Write(append(header, "is_fraud"))
		}
		rec := make([]string, 0, len(header)+1)
		for _, v := range r.Result.Features {
			switch x := v.(type) {
			case nil:
				rec = append(rec, "")
			case float64:
				rec = append(rec, strconv.FormatFloat(x, 'g', -1, 64))
			default:
				return fmt.Errorf("feature value %v is not a number", v)
			}
		}
		w.Write(append(rec, strconv.Itoa(tx.IsFraud)))
		if _, err := n.IngestJSON([]byte(`{"records":{"transactions":[{"record":` + string(tx.AppendJSON(nil)) + `}]}}`)); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}
