package systemtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

// TestImportFixedAfterARefusalCountsOnce: an import with a bad row is
// refused whole, naming the row, before any chunk is applied; the operator
// fixes the row, which changes the file's size and modification time, and
// runs the same import again. Every card holder's 1-day sum holds each of
// its events once.
func TestImportFixedAfterARefusalCountsOnce(t *testing.T) {
	p := harness.Start(t, harness.Options{})
	dir := t.TempDir()
	now := time.Now().UnixMilli()
	const events, chunk, bad = 1000, 100, 350 // the bad row is in the fourth chunk
	per := map[string]int{}
	row := func(i int, amt string) string {
		user := fmt.Sprintf("u%d", i%7)
		return fmt.Sprintf("%d,%s,m%d,food,%s,FR,48.8,2.3,0\n", now-2*3_600_000+int64(i)*1000, user, i%3, amt)
	}
	write := func(badAmt string) string {
		var b strings.Builder
		b.WriteString("timestamp,user_id,merchant,category,amt,country,lat,long,is_fraud\n")
		for i := range events {
			amt := "10"
			if i == bad {
				amt = badAmt
			}
			b.WriteString(row(i, amt))
		}
		path := filepath.Join(dir, "events.csv")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for i := range events {
		per[fmt.Sprintf("u%d", i%7)]++
	}
	importFile := func(path string) (string, error) {
		out, err := exec.Command(harness.Binary(t), "import", path, "--source", "transactions", "--url", p.URL, "--quiet", "--chunk", fmt.Sprint(chunk)).CombinedOutput()
		return string(out), err
	}

	path := write("not-a-number")
	out, err := importFile(path)
	if err == nil || !strings.Contains(out, fmt.Sprintf(`row %d: column "amt"`, bad+1)) || !strings.Contains(out, "nothing was imported") {
		t.Fatalf("the import with a bad row in chunk %d: %v\n%s", bad/chunk, err, out)
	}
	time.Sleep(10 * time.Millisecond) // a modification time of its own
	path = write("10.00")             // the fix: another size, another time
	if out, err := importFile(path); err != nil || !strings.Contains(out, fmt.Sprintf("imported %d events", events)) {
		t.Fatalf("the import of the fixed file: %v\n%s", err, out)
	}

	ctx := context.Background()
	for user, n := range per {
		f, err := p.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection",
			JoinKeys:       map[string]any{"user_id": user, "merchant": "m0", "country": "FR"},
			RequestContext: map[string]any{"amt": 1.0, "lat": 48.8, "long": 2.3}})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := f.Get("user_transaction_amounts.amt_sum_1d")
		if got != float64(10*n) {
			t.Errorf("%s: amt_sum_1d %v, want %d (%d events of 10 each, once)", user, got, 10*n, n)
		}
	}
}
