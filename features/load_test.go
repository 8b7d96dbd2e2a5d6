package features

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/windows"
)

func TestDefaultRepo(t *testing.T) {
	r, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	s, ok := r.Service("fraud_detection")
	if !ok {
		t.Fatal("no service fraud_detection")
	}
	var got []string
	for _, ref := range s.Features {
		got = append(got, r.FeatureName(ref)+":"+r.FeatureType(ref).DataType())
	}
	want := []string{
		"user_transaction_counts.amt_count_1m:int64",
		"user_transaction_counts.amt_count_5m:int64",
		"user_transaction_counts.amt_count_1h:int64",
		"user_transaction_amounts.amt_sum_1h:float64",
		"user_transaction_amounts.amt_mean_1h:float64",
		"user_transaction_amounts.amt_max_1h:float64",
		"user_transaction_amounts.amt_sum_1d:float64",
		"user_transaction_amounts.amt_mean_1d:float64",
		"user_transaction_amounts.amt_stddev_1d:float64",
		"user_distinct_merchants.merchant_distinct_count_1h:int64",
		"user_distinct_merchants.merchant_distinct_count_1d:int64",
		"merchant_transaction_counts.amt_count_5m:int64",
		"merchant_transaction_counts.amt_count_1h:int64",
		"country_amount_stats.amt_mean_365d:float64",
		"user_profile.home_lat:float64",
		"user_profile.home_long:float64",
		"transaction_request.distance_from_home_km:float64",
		"transaction_request.amt_to_user_mean_1d:float64",
	}
	if !slices.Equal(got, want) {
		t.Errorf("fraud_detection features:\n got %q\nwant %q", got, want)
	}
	if !slices.Equal(s.JoinKeys, []string{"user_id", "merchant", "country"}) {
		t.Errorf("join keys %v", s.JoinKeys)
	}
	if fmt.Sprint(s.RequestContext) != "[{amt float} {lat float} {long float}]" {
		t.Errorf("request context %v", s.RequestContext)
	}

	src, _ := r.Source("transactions")
	if src.Timestamp != "timestamp" || src.Lateness != DefaultLateness || !slices.Equal(src.Labels, []string{"is_fraud"}) || len(src.Columns) != 8 {
		t.Errorf("source %+v", src)
	}
	for _, v := range r.Views {
		if v.Spec.Name != v.Name || v.Spec.Lateness != src.Lateness || v.Source != src {
			t.Errorf("view %s: spec %+v", v.Name, v.Spec)
		}
		if src.Columns[v.KeyColumn].Name != v.Entity.JoinKey {
			t.Errorf("view %s: key column %d", v.Name, v.KeyColumn)
		}
		if len(v.SourceColumns) != len(v.Spec.Columns) || len(v.Features) != len(v.Spec.Aggregations) {
			t.Errorf("view %s: %d source columns, %d spec columns, %d features, %d aggregations", v.Name,
				len(v.SourceColumns), len(v.Spec.Columns), len(v.Features), len(v.Spec.Aggregations))
		}
		for i, c := range v.SourceColumns {
			if src.Columns[c].Name != v.Spec.Columns[i].Name {
				t.Errorf("view %s: spec column %d is %s, source column %d", v.Name, i, v.Spec.Columns[i].Name, c)
			}
		}
		for _, a := range v.Spec.Aggregations {
			want := int64(0)
			if v.Name == "country_amount_stats" {
				want = day
			}
			if a.Interval != want {
				t.Errorf("view %s: %v over %s: interval %d; want %d", v.Name, a.Func, FormatWindow(a.Window), a.Interval, want)
			}
		}
	}
	dm, _ := r.View("user_distinct_merchants")
	if dm.Spec.Columns[0] != (windows.Column{Name: "merchant", Kind: windows.String}) {
		t.Errorf("user_distinct_merchants columns %v", dm.Spec.Columns)
	}
	rv, _ := r.RequestView("transaction_request")
	if got := fmt.Sprint(rv.Features[0].Inputs); got != "[{request 1 0} {request 2 0} {table 0 0} {table 0 1}]" {
		t.Errorf("distance_from_home_km inputs %s", got)
	}
	if got := fmt.Sprint(rv.Features[1].Inputs); got != "[{request 0 0} {aggregate 1 4}]" {
		t.Errorf("amt_to_user_mean_1d inputs %s", got)
	}
	if ref, ok := r.Feature("user_transaction_amounts.amt_mean_1d"); !ok || ref != (Ref{RefAggregate, 1, 4}) {
		t.Errorf("Feature lookup: %v %v", ref, ok)
	}
	checkRoundTrip(t, r)
}

// checkRoundTrip loads r.YAML() and wants the same YAML and feature names.
func checkRoundTrip(t testing.TB, r *Repo) {
	t.Helper()
	y := r.YAML()
	r2, err := Load(fstest.MapFS{"repo.yaml": {Data: y}})
	if err != nil {
		t.Fatalf("reload of YAML():\n%s\n%v", y, err)
	}
	if y2 := r2.YAML(); string(y2) != string(y) {
		t.Fatalf("YAML does not round-trip:\n%s\n---\n%s", y, y2)
	}
	for i, s := range r.Services {
		s2 := r2.Services[i]
		if !slices.Equal(s.Features, s2.Features) || !slices.Equal(s.JoinKeys, s2.JoinKeys) || !slices.Equal(s.RequestContext, s2.RequestContext) {
			t.Fatalf("service %s differs after round trip: %+v vs %+v", s.Name, s, s2)
		}
	}
	for i, v := range r.Views {
		if fmt.Sprint(v.Spec) != fmt.Sprint(r2.Views[i].Spec) {
			t.Fatalf("view %s spec differs after round trip: %+v vs %+v", v.Name, v.Spec, r2.Views[i].Spec)
		}
	}
}

const base = `sources:
  - name: tx
    schema: {user_id: string, amt: float, merchant: string, lat: float, is_fraud: int}
    labels: [is_fraud]
entities:
  - name: user
    join_key: user_id
`

const viewHead = `feature_views:
  - name: v
    source: tx
    entity: user
    aggregations:
`

// TestLoadErrors: each repo is wrong in one way; the line marked "# <" is
// where the error must point, at the column of the token at.
func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, at, want string
	}{
		{"unknown function", base + viewHead + `      - {column: amt, function: cnt, window: 1m} # <`,
			"cnt", `feature view "v": aggregation: unknown function "cnt" (did you mean "count"?): use one of count, sum, mean`},
		{"unknown field", base + `feature_views:
  - name: v
    source: tx
    entity: user
    agregations: # <
      - {column: amt, function: count, window: 1m}`,
			"agregations", `feature view "v": unknown field "agregations" (did you mean "aggregations"?)`},
		{"unknown top-level field", base + "feature_view: [] # <", "feature_view", `unknown field "feature_view" (did you mean "feature_views"?)`},
		{"unknown column", base + viewHead + `      - {column: amount, function: sum, window: 1m} # <`,
			"amount", `unknown column "amount" (did you mean "amt"?): source "tx" has user_id, amt, merchant, lat, is_fraud`},
		{"label", base + viewHead + `      - {column: is_fraud, function: sum, window: 1m} # <`,
			"is_fraud", `is_fraud is a label of source tx; labels are never features`},
		{"join key", base + viewHead + `      - {column: user_id, function: count, window: 1m} # <`,
			"user_id", `column "user_id" is the join key of entity "user"`},
		{"timestamp column", base + viewHead + `      - {column: timestamp, function: count, window: 1m} # <`,
			"timestamp", `"timestamp" is the event timestamp of source "tx", not a field`},
		{"sum of string", base + viewHead + `      - {column: merchant, function: sum, window: 1m} # <`,
			"sum", `sum needs a float, int or bool column, and "merchant" is a string`},
		{"bad window", base + viewHead + `      - {column: amt, function: sum, window: 5x} # <`,
			"5x", `window: bad duration "5x": unknown unit "x"`},
		{"zero window", base + viewHead + `      - {column: amt, function: sum, window: 0s} # <`,
			"0s", `window: bad duration "0s": must be longer than zero`},
		{"missing window", base + viewHead + `      - {column: amt, function: sum} # <`,
			"{", `missing field "window"`},
		{"default interval", base + viewHead + `      - {column: amt, function: sum, window: 36h30m} # <`,
			"36h30m", `window 2190m is not a multiple of the default aggregation interval for a 2190m window (1h): set interval: 30m`},
		{"explicit interval", base + viewHead + `      - {column: amt, function: sum, window: 1h, interval: 7m} # <`,
			"1h", `window 1h is not a multiple of interval (7m): set interval: 1m, or make the window a multiple of 7m`},
		{"view interval", base + `feature_views:
  - name: v
    source: tx
    entity: user
    aggregation_interval: 1d
    aggregations:
      - {column: amt, function: sum, window: 36h} # <`,
			"36h", `window 36h is not a multiple of the view's aggregation_interval (1d): set interval: 12h`},
		{"last_n without n", base + viewHead + `      - {column: merchant, function: last_n, window: 1h} # <`,
			"{", `last_n needs n: how many values to keep (1 to 1000)`},
		{"last_n n=0", base + viewHead + `      - {column: merchant, function: last_n, n: 0, window: 1h} # <`,
			"0,", `n must be a whole number from 1 to 1000, got "0"`},
		{"last_n tiled", base + viewHead + `      - {column: merchant, function: last_distinct_n, n: 3, window: 1h, interval: 1m} # <`,
			"1m", `last_distinct_n is exact-only: remove interval`},
		{"last_n view interval", base + `feature_views:
  - name: v
    source: tx
    entity: user
    aggregation_interval: 1h
    aggregations:
      - {column: merchant, function: last_n, n: 3, window: 1d} # <`,
			"{", `last_n is exact-only, and the view's aggregation_interval is 1h: set interval: 0 on this aggregation`},
		{"n on count", base + viewHead + `      - {column: amt, function: count, n: 3, window: 1h} # <`,
			"3", `n is only for last_n and last_distinct_n`},
		{"duplicate feature", base + viewHead + `      - {column: amt, function: count, window: 1h}
      - {column: amt, function: count, window: 60m} # <`,
			"{", `feature "amt_count_1h" is defined twice in this view: set name: on one of them`},
		{"unknown source", base + `feature_views:
  - name: v
    source: txn # <
    entity: user
    aggregations: [{column: amt, function: count, window: 1h}]`,
			"txn", `unknown source "txn" (did you mean "tx"?): define it under sources (defined: tx)`},
		{"unknown entity", base + `feature_views:
  - name: v
    source: tx
    entity: usr # <
    aggregations: [{column: amt, function: count, window: 1h}]`,
			"usr", `unknown entity "usr" (did you mean "user"?)`},
		{"join key not in source", base + `  - name: card
    join_key: card_id
feature_views:
  - name: v
    source: tx
    entity: card # <
    aggregations: [{column: amt, function: count, window: 1h}]`,
			"card", `entity "card" has join key "card_id", which is not a field of source "tx": add card_id to the source's schema`},
		{"float join key", base + `  - name: place
    join_key: lat
feature_views:
  - name: v
    source: tx
    entity: place # <
    aggregations: [{column: amt, function: count, window: 1h}]`,
			"place", `join key "lat" is a float field of source "tx": join keys are string or int fields`},
		{"duplicate name", base + `feature_views:
  - name: tx # <
    source: tx
    entity: user
    aggregations: [{column: amt, function: count, window: 1h}]`,
			"name", `feature view "tx": the name is already used by source "tx" (bad.yaml:2:5)`},
		{"reserved name", base + `table_views:
  - name: request # <
    entity: user
    schema: {home_lat: float}`,
			"name", `the name "request" is reserved`},
		{"bad name", base + `table_views:
  - name: user-profile # <
    entity: user
    schema: {home_lat: float}`,
			"user-profile", `name "user-profile" is not a valid name`},
		{"table join key", base + `table_views:
  - name: profile
    entity: user
    schema: {user_id: string, home_lat: float} # <`,
			"user_id", `schema: "user_id" is the join key of entity "user", which is the table's row key: remove it from the schema`},
		{"unknown type", `sources:
  - name: tx
    schema:
      user_id: string
      amt: double # <`,
			"double", `field "amt": unknown type "double": use string, float, int or bool`},
		{"timestamp in schema", `sources:
  - name: tx
    timestamp: ts
    schema:
      user_id: string
      ts: int # <`,
			"ts", `"ts" is the timestamp field, which every event carries: remove it from the schema`},
		{"unknown label", `sources:
  - name: tx
    schema: {amt: float}
    labels: [is_frad] # <`,
			"is_frad", `labels: "is_frad" is not a field of the schema`},
		{"bad lateness", `sources:
  - name: tx
    schema: {amt: float}
    lateness: -5m # <`,
			"-5m", `lateness: bad duration "-5m"`},
		{"duplicate key", `sources:
  - name: tx
    schema: {amt: float}
    name: ty # <`,
			"name", `field "name" is set twice (also at line 2)`},
		{"invalid yaml", "sources: # <\n  - name: [tx\n  - b: c", "", `invalid YAML: did not find expected ',' or ']'`},
		{"not a mapping", "- a # <\n- b", "", `expected a mapping with keys sources, entities`},
		{"alias", `sources:
  - &s {name: tx, schema: {amt: float}}
  - *s # <`,
			"*s", `expected a mapping (key: value lines or {key: value, ...}), found an alias (*s; anchors and aliases are not supported`},
		{"expression unknown function", base + `request_views:
  - name: r
    request_schema: {amt: float}
    features:
      - name: f
        expression: request.amt + foo(1) # <`,
			"foo", `request view "r": feature "f": expression: unknown function foo: use one of haversine_km, sqrt`},
		{"expression quoted", base + `request_views:
  - name: r
    request_schema: {amt: float}
    features:
      - {name: f, expression: "request.amt * 2 +"} # <`,
			`"}`, `expression: expected a number, an identifier, a function call or (, found the end of the expression`},
		{"expression unknown field", base + `request_views:
  - name: r
    request_schema: {amt: float}
    features:
      - name: f
        expression: request.amount / 2 # <`,
			"request.amount", `unknown request field request.amount (did you mean "amt"?): declare it in request_schema (declared: amt)`},
		{"expression unknown view", base + viewHead + `      - {column: amt, function: mean, window: 1h}
request_views:
  - name: r
    features:
      - name: f
        expression: 2 * w.amt_mean_1h # <`,
			"w.", `unknown view w in w.amt_mean_1h (did you mean "v"?)`},
		{"expression unknown feature", base + viewHead + `      - {column: amt, function: mean, window: 1h}
request_views:
  - name: r
    features:
      - name: f
        expression: 2 * v.amt_mean_1d # <`,
			"v.", `feature view v has no feature amt_mean_1d (did you mean "amt_mean_1h"?) (it has amt_mean_1h)`},
		{"expression list feature", base + viewHead + `      - {column: amt, function: last_n, n: 2, window: 1h}
request_views:
  - name: r
    features:
      - name: f
        expression: v.amt_last_2_1h # <`,
			"v.", `v.amt_last_2_1h is a list of float, and expressions compute with numbers`},
		{"request view reads request view", base + `request_views:
  - name: r
    request_schema: {amt: float}
    features:
      - {name: double, expression: request.amt * 2}
  - name: r2
    features:
      - name: f
        expression: r.double + 1 # <`,
			"r.", `r.double is a request-time feature, and request features read only request fields, feature views and table views (one level)`},
		{"string request field in an expression", base + `request_views:
  - name: r
    request_schema: {country: string}
    features:
      - {name: one, expression: "request.country + 1"} # <`,
			"request.country", `request.country is a string, and expressions compute with numbers (a string request field feeds a model's string input: list request.country in model.inputs)`},
		{"service unknown view", base + `feature_services:
  - name: s
    features: [user_transactions] # <`,
			"user_transactions", `features: unknown view "user_transactions": list a feature view, table view or request view (defined: none)`},
		{"service lists a source", base + `feature_services:
  - name: s
    features: [tx] # <`,
			"tx", `features: tx is source "tx" (bad.yaml:2:5), not a feature view, table view or request view`},
		{"service unknown feature", base + viewHead + `      - {column: amt, function: count, window: 1h}
feature_services:
  - name: s
    features: [v.amt_count_1d] # <`,
			"v.", `v has no feature "amt_count_1d" (did you mean "amt_count_1h"?) (it has amt_count_1h)`},
		{"service duplicate", base + viewHead + `      - {column: amt, function: count, window: 1h}
feature_services:
  - name: s
    features:
      - v
      - v.amt_count_1h # <`,
			"v.", `features: v.amt_count_1h is listed twice (also at line 17): list each feature once`},
		{"empty service", base + `feature_services:
  - name: s
    features: [] # <`,
			"[", `features: the list is empty`},
		{"service without features", base + `feature_services:
  - name: s # <`,
			"name", `feature service "s": missing field "features"`},
		{"request context conflict", base + `request_views:
  - name: r1
    request_schema: {amt: float}
    features: [{name: a, expression: request.amt}]
  - name: r2
    request_schema: {amt: int}
    features: [{name: b, expression: request.amt}]
feature_services:
  - name: s
    features: [r1, r2] # <`,
			"[", `request field "amt" is a float in request view r1 and a int in r2: give it one type`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := strings.Split(tc.yaml, "\n")
			line := slices.IndexFunc(lines, func(s string) bool { return strings.HasSuffix(s, "# <") })
			if line < 0 {
				t.Fatal("test case has no line marked # <")
			}
			col := 1
			if tc.at != "" {
				col = strings.Index(lines[line], tc.at) + 1
			}
			prefix := fmt.Sprintf("bad.yaml:%d:%d: ", line+1, col)
			_, err := Load(fstest.MapFS{"a.yaml": {Data: []byte(base2)}, "bad.yaml": {Data: []byte(tc.yaml)}})
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			for _, e := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(e, prefix) && strings.Contains(e, tc.want) {
					var le *Error
					if !errors.As(err, &le) {
						t.Errorf("error is not an *Error")
					}
					return
				}
			}
			t.Errorf("want an error %s...%s...; got:\n%v", prefix, tc.want, err)
		})
	}
}

// base2 is a valid file loaded beside each bad one: errors must name the bad file.
const base2 = `entities:
  - name: merchant
    join_key: merchant
`

func TestLoadCollectsAllErrors(t *testing.T) {
	_, err := Load(fstest.MapFS{"r.yaml": {Data: []byte(base + viewHead + `      - {column: amt, function: cnt, window: 1m}
      - {column: amount, function: sum, window: 1x}
feature_services:
  - name: s
    features: [nope]
`)}})
	if err == nil {
		t.Fatal("loaded")
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != 4 {
		t.Fatalf("want 4 errors, got %d:\n%v", len(got), err)
	}
	if !slices.IsSortedFunc(got, func(a, b string) int { return strings.Compare(a[:12], b[:12]) }) {
		t.Errorf("errors not sorted by position:\n%v", err)
	}
}

func TestLoadFiles(t *testing.T) {
	// Files merge in name order; a file may use what another defines.
	fsys := fstest.MapFS{
		"b_views.yml": {Data: []byte(viewHead + `      - {column: merchant, function: last_distinct_n, n: 3, window: 2d}
      - {column: amt, function: variance, window: 60d, name: amt_var}
      - {column: lat, function: last, window: 90m}
      - {column: merchant, function: last, window: 1h30m}
feature_services:
  - name: s
    features: [v.lat_last_90m, v.amt_var]
`)},
		"a_base.yaml": {Data: []byte(base)},
		"notes.txt":   {Data: []byte("not yaml: [")},
		"empty.yaml":  {Data: []byte("# nothing here\n")},
	}
	r, err := Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	v := r.Views[0]
	var names []string
	for _, f := range v.Features {
		names = append(names, fmt.Sprintf("%s:%s:%v", f.FullName, f.Type, f.List))
	}
	want := []string{"v.merchant_last_distinct_3_2d:string:true", "v.amt_var:float:false", "v.lat_last_90m:float:false", "v.merchant_last_90m:string:false"}
	if !slices.Equal(names, want) {
		t.Errorf("features %q; want %q", names, want)
	}
	if got := fmt.Sprint(v.Spec.Aggregations); got != "[{0 last_distinct_n 172800000 0 3} {1 variance 5184000000 86400000 0} {2 last 5400000 0 0} {0 last 5400000 0 0}]" {
		t.Errorf("aggregations %s", got)
	}
	if !slices.Equal(v.SourceColumns, []int{2, 1, 3}) {
		t.Errorf("source columns %v", v.SourceColumns)
	}
	if got := fmt.Sprint(r.Services[0].Features); got != "[{aggregate 0 2} {aggregate 0 1}]" {
		t.Errorf("service features %s", got)
	}
	checkRoundTrip(t, r)

	if _, err := Load(fstest.MapFS{"x.txt": {}}); err == nil || !strings.Contains(err.Error(), "no *.yaml or *.yml files") {
		t.Errorf("empty repo: %v", err)
	}
}

func TestHiddenInputs(t *testing.T) {
	// A service listing only a request feature needs the join keys of
	// the views and tables the feature reads.
	r, err := Load(fstest.MapFS{"r.yaml": {Data: []byte(base + `  - name: merchant
    join_key: merchant
feature_views:
  - name: m
    source: tx
    entity: merchant
    aggregations: [{column: amt, function: mean, window: 1d}]
table_views:
  - name: p
    entity: user
    schema: {home_lat: float, flag: bool, tier: string}
request_views:
  - name: r
    request_schema: {amt: float, lat: float}
    features:
      - {name: f, expression: "request.amt / m.amt_mean_1d + p.flag * (request.lat - p.home_lat)"}
feature_services:
  - name: s
    features: [r.f]
`)}})
	if err != nil {
		t.Fatal(err)
	}
	s := r.Services[0]
	if !slices.Equal(s.JoinKeys, []string{"merchant", "user_id"}) || fmt.Sprint(s.RequestContext) != "[{amt float} {lat float}]" {
		t.Errorf("service %+v", s)
	}
	if got := fmt.Sprint(r.Requests[0].Features[0].Inputs); got != "[{request 0 0} {aggregate 0 0} {table 0 1} {request 1 0} {table 0 0}]" {
		t.Errorf("inputs %s", got)
	}
	checkRoundTrip(t, r)
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		s  string
		ms int64
	}{
		{"500ms", 500}, {"30s", 30000}, {"1m", 60000}, {"5m", 300000}, {"1h", 3600000},
		{"1d", 86400000}, {"365d", 31536000000}, {"1h30m", 5400000}, {"1d1s", 86401000}, {"1s500ms", 1500},
	} {
		got, err := ParseDuration(tc.s)
		if err != nil || got != tc.ms {
			t.Errorf("ParseDuration(%q) = %d, %v; want %d", tc.s, got, err, tc.ms)
		}
	}
	for _, s := range []string{"", "0", "0s", "-1m", "1", "m", "1x", "1.5h", "1h 30m", "36501d", "36500d1ms", "106751991168d", "9223372036854775807ms1ms", "99999999999999999999s"} {
		if ms, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) = %d; want an error", s, ms)
		}
	}
	for _, tc := range []struct {
		ms int64
		s  string
	}{
		{60000, "1m"}, {86400000, "1d"}, {31536000000, "365d"}, {5400000, "90m"}, {129600000, "36h"},
		{86401000, "1d1s"}, {1500, "1500ms"}, {0, "0s"}, {-60000, "-1m"},
	} {
		if got := FormatWindow(tc.ms); got != tc.s {
			t.Errorf("FormatWindow(%d) = %q; want %q", tc.ms, got, tc.s)
		}
		if tc.ms > 0 {
			if back, err := ParseDuration(tc.s); err != nil || back != tc.ms {
				t.Errorf("ParseDuration(FormatWindow(%d)) = %d, %v", tc.ms, back, err)
			}
		}
	}
}

func TestDefaultInterval(t *testing.T) {
	for _, tc := range []struct{ w, g int64 }{
		{60000, 0}, {day, 0}, {day + hour, hour}, {30 * day, hour}, {31 * day, day}, {365 * day, day},
	} {
		if g := DefaultInterval(tc.w); g != tc.g {
			t.Errorf("DefaultInterval(%s) = %d; want %d", FormatWindow(tc.w), g, tc.g)
		}
	}
}

// TestDocExample loads the example of the package documentation.
func TestDocExample(t *testing.T) {
	r, err := Load(fstest.MapFS{"repo.yaml": {Data: []byte(`
sources:
  - name: transactions
    timestamp: timestamp
    lateness: 0
    schema:
      user_id: string
      merchant: string
      amt: float
      is_fraud: int
    labels: [is_fraud]
entities:
  - name: user
    join_key: user_id
feature_views:
  - name: user_transaction_amounts
    source: transactions
    entity: user
    aggregation_interval: 1h
    aggregations:
      - {column: amt, function: mean, window: 1d}
      - {column: amt, function: sum, window: 7d, interval: 1d}
      - {column: merchant, function: last_n, n: 5, window: 1h, interval: 0, name: recent_merchants}
table_views:
  - name: user_profile
    entity: user
    schema: {home_lat: float, home_long: float}
request_views:
  - name: transaction_request
    request_schema: {amt: float, lat: float, long: float}
    features:
      - name: amt_to_user_mean_1d
        expression: request.amt / user_transaction_amounts.amt_mean_1d
feature_services:
  - name: fraud_detection
    features:
      - user_transaction_amounts
      - user_profile.home_lat
      - transaction_request
`)}})
	if err != nil {
		t.Fatal(err)
	}
	v := r.Views[0]
	if got := fmt.Sprint(v.Spec.Aggregations); got != "[{0 mean 86400000 3600000 0} {0 sum 604800000 86400000 0} {1 last_n 3600000 0 5}]" {
		t.Errorf("aggregations %s", got)
	}
	if v.Features[2].FullName != "user_transaction_amounts.recent_merchants" || v.Features[2].Type != String || !v.Features[2].List {
		t.Errorf("features %+v", v.Features)
	}
	if r.Sources[0].Lateness != 0 {
		t.Errorf("lateness %d", r.Sources[0].Lateness)
	}
	checkRoundTrip(t, r)
}

// A view Load accepts must be one the windows engine builds: distinct_count
// of a numeric column is exact-only there, so a tiled one (by default past
// 1d, or by interval) must be refused by Load, naming the fix.
func TestDistinctCountOfNumberIsExactOnly(t *testing.T) {
	for _, agg := range []string{
		"{column: amt, function: distinct_count, window: 7d}",
		"{column: amt, function: distinct_count, window: 1h, interval: 1m}",
		"{column: is_fraud2, function: distinct_count, window: 40d}",
	} {
		src := strings.Replace(base, "is_fraud: int}", "is_fraud: int, is_fraud2: int}", 1) + viewHead + "      - " + agg + "\n"
		r, err := Load(fstest.MapFS{"f.yaml": {Data: []byte(src)}})
		if err == nil {
			for _, v := range r.Views {
				if _, werr := windows.New(v.Spec); werr != nil {
					t.Errorf("%s: Load accepted a view windows.New refuses: %v", agg, werr)
				}
			}
			continue
		}
		if !strings.Contains(err.Error(), "exact-only") || !strings.Contains(err.Error(), "interval") {
			t.Errorf("%s: %v, want an error saying distinct_count of a number is exact-only", agg, err)
		}
	}
	// Exact, and strings with tiles, still load.
	for _, agg := range []string{
		"{column: amt, function: distinct_count, window: 7d, interval: 0}",
		"{column: amt, function: distinct_count, window: 1h}",
		"{column: merchant, function: distinct_count, window: 7d}",
	} {
		if _, err := Load(fstest.MapFS{"f.yaml": {Data: []byte(base + viewHead + "      - " + agg + "\n")}}); err != nil {
			t.Errorf("%s: %v", agg, err)
		}
	}
}
