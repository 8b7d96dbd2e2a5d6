package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/bench/workload"
	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/store"
)

func demoCmd() *cobra.Command {
	var f serveFlags
	var rate, users, nodes int
	var duration time.Duration
	var seed uint64
	var kafka string
	cmd := &cobra.Command{
		Use:   "demo",
		Args:  noArgs,
		Short: "Serve the fraud repo and drive it with a synthetic transaction stream, printing live feature vectors",
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case rate < 1:
				return &exitError{exitUsage, fmt.Errorf("--rate %d: give the transactions per second, at least 1", rate)}
			case users < 1:
				return &exitError{exitUsage, fmt.Errorf("--users %d: give the number of card holders, at least 1", users)}
			case nodes < 1:
				return &exitError{exitUsage, fmt.Errorf("--nodes %d: give the number of nodes, at least 1", nodes)}
			case duration < 0:
				return &exitError{exitUsage, fmt.Errorf("--duration %s: give how long to run (0: until Ctrl-C)", duration)}
			}
			if nodes > 1 {
				return demoCluster(cmd, f, nodes, rate, users, seed, duration, kafka)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			cfg, repo, dir, err := f.load()
			if err != nil {
				return err
			}
			if err := claimDemoDir(cfg.DataDir); err != nil {
				return err
			}
			var prod *kafkaDemo
			if kafka != "" {
				if prod, err = newKafkaDemo(kafka, repo); err != nil {
					return err
				}
				defer prod.cl.Close()
			}
			r, err := start(cfg, repo, dir, log)
			if err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			if duration > 0 {
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			c, err := client.New(r.ln.Addr().String(), client.Options{})
			if err != nil {
				return err
			}
			d := &demo{c: c, cs: []*client.Client{c}, out: cmd.OutOrStdout(), kafka: prod,
				gen: workload.New(workload.Config{Seed: seed, Users: users, Merchants: 500, FraudRate: 0.002})}
			runErr := d.run(ctx, rate)
			if err := r.stop(log); err != nil {
				return err
			}
			return runErr
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&rate, "rate", 2000, "transactions per second to ingest")
	cmd.Flags().IntVar(&users, "users", 10000, "card holders in the synthetic stream")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of the synthetic stream")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	cmd.Flags().IntVar(&nodes, "nodes", 1, "start this many local tally processes as a cluster (data dirs and logs under --data-dir) and stream into every node")
	cmd.Flags().StringVar(&kafka, "kafka", "", "stream the transactions through this Kafka broker (host:port; topic "+demoTopic+", 8 partitions) instead of HTTP bulk ingest")
	return cmd
}

// demoMark is the file that marks a data dir as one tally demo made.
const demoMark = "DEMO"

// claimDemoDir makes dir a data dir for the demo, or refuses it, changing
// nothing: demo's default data dir is serve's (./tally-data), and its
// synthetic transactions and user_profile rows must never join a node's
// own data. A new or empty directory is created and marked; one already
// marked is taken again (a demo's data dir serves with tally serve, and
// demo runs on it again); anything else is refused, and the inside of a
// data dir (store.CheckDataDir) first of all.
func claimDemoDir(dir string) error {
	if err := store.CheckDataDir(dir); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && len(ents) == 0:
	case err != nil:
		return fmt.Errorf("demo data dir: %w", err)
	default:
		if _, err := os.Stat(filepath.Join(dir, demoMark)); err == nil {
			return nil
		}
		return fmt.Errorf("data dir %s holds data tally demo did not make (a node's log and tables?); demo would add synthetic transactions "+
			"and user_profile rows to them: pass --data-dir a new directory (or an empty one)", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo data dir: %w", err)
	}
	mark := []byte("this data dir was made by tally demo: its transactions and user_profile rows are synthetic\n")
	if err := os.WriteFile(filepath.Join(dir, demoMark), mark, 0o644); err != nil {
		return fmt.Errorf("demo data dir: %w", err)
	}
	return nil
}

type demo struct {
	c     *client.Client
	cs    []*client.Client // every node's client: ingest and lookups rotate over them
	ids   string           // cluster: request ids are ids+tick, so a retried ingest counts once
	out   io.Writer
	gen   *workload.Generator
	kafka *kafkaDemo // nil: HTTP bulk ingest
}

// timeout bounds each of the demo's requests.
func timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

func (d *demo) run(ctx context.Context, rate int) error {
	// The user_profile table: each card holder's home.
	csv := []byte("user_id,home_lat,home_long\n")
	for _, u := range d.gen.Users() {
		csv = append(csv, u.ID...)
		csv = append(csv, ',')
		csv = strconv.AppendFloat(csv, u.HomeLat, 'f', 5, 64)
		csv = append(csv, ',')
		csv = strconv.AppendFloat(csv, u.HomeLong, 'f', 5, 64)
		csv = append(csv, '\n')
	}
	tctx, cancel := timeout()
	_, err := d.c.UploadTable(tctx, "user_profile", client.CSV, csv, client.TableOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("load user_profile: %w", err)
	}
	where := d.c.URL()
	if len(d.cs) > 1 {
		where = fmt.Sprintf("%d nodes in turn", len(d.cs))
	}
	fmt.Fprintf(d.out, "tally demo: %d card holders loaded into user_profile; streaming %d transactions/s into %s (Ctrl-C to stop)\n\n", len(d.gen.Users()), rate, where)

	const tick = 50 * time.Millisecond
	perTick := max(1, rate*int(tick)/int(time.Second))
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var body []byte
	var sent, ticks int
	start := time.Now()
	var shown []workload.Txn
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(d.out, "\nsent %d transactions in %s\n", sent, time.Since(start).Round(time.Second))
			return nil
		case <-ticker.C:
		}
		body = body[:0]
		now := time.Now().UnixMilli()
		var fraud *workload.Txn
		var last workload.Txn
		for i := 0; i < perTick; i++ {
			t := d.gen.Next(now)
			body = t.AppendJSON(body)
			body = append(body, '\n')
			last = t
			if t.IsFraud == 1 && fraud == nil {
				tc := t
				fraud = &tc
			}
		}
		tctx, cancel := timeout()
		var err error
		if d.kafka != nil {
			err = d.kafka.produce(tctx, body)
		} else {
			wo := client.WriteOptions{}
			if d.ids != "" {
				wo.RequestID = d.ids + strconv.Itoa(ticks)
			}
			_, err = d.cs[ticks%len(d.cs)].IngestBulk(tctx, "transactions", body, wo)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		sent += perTick
		ticks++
		if fraud != nil {
			shown = append(shown, *fraud)
		}
		if ticks%int(time.Second/tick) == 0 {
			shown = append(shown, last)
			if err := d.show(shown); err != nil {
				return err
			}
			shown = shown[:0]
		}
	}
}

// show prints the fraud_detection vector of each transaction, as a scoring
// request at that moment would see it.
func (d *demo) show(txns []workload.Txn) error {
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "user\tamt\tcnt_1m\tcnt_5m\tsum_1h\tmean_1d\tmerch_1h\tmerch_cnt_5m\tkm_from_home\tamt/mean_1d\tp(fraud)\tlabel\t")
	for i, t := range txns {
		tctx, cancel := timeout()
		resp, err := d.cs[i%len(d.cs)].Predict(tctx, client.LookupRequest{Service: "fraud_detection",
			JoinKeys:       map[string]any{"user_id": t.UserID, "merchant": t.Merchant, "country": t.Country},
			RequestContext: map[string]any{"amt": t.Amt, "lat": t.Lat, "long": t.Long}})
		cancel()
		if err != nil {
			return fmt.Errorf("predict: %w", err)
		}
		v := resp.Map()
		label := "ok"
		if t.IsFraud == 1 {
			label = "FRAUD"
		}
		score := "-"
		if p := resp.Result.Prediction; p != nil {
			score = strconv.FormatFloat(p.Probabilities["1"], 'f', 2, 64)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", t.UserID, t.Amt,
			num(v["user_transaction_counts.amt_count_1m"]), num(v["user_transaction_counts.amt_count_5m"]),
			num(v["user_transaction_amounts.amt_sum_1h"]), num(v["user_transaction_amounts.amt_mean_1d"]),
			num(v["user_distinct_merchants.merchant_distinct_count_1h"]), num(v["merchant_transaction_counts.amt_count_5m"]),
			num(v["transaction_request.distance_from_home_km"]), num(v["transaction_request.amt_to_user_mean_1d"]), score, label)
	}
	return tw.Flush()
}

func num(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return fmt.Sprint(v)
}
