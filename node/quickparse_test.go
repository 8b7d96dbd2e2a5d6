package node

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tally-ml/tally/tabular"
)

// lookupVia answers body through quickParse (quick) or fastjson; accepted
// is false when quick and quickParse left the body to fastjson.
func lookupVia(n *Node, body []byte, quick bool) (out []byte, aerr *APIError, accepted bool) {
	w := &lookupWork{}
	var r oneLookup
	if quick {
		p := n.quickParse(w, body)
		if p == nil {
			return nil, nil, false
		}
		r = oneLookup{plan: p, now: n.now(), meta: defaultMeta}
		r.t = r.now
		aerr = n.compute(p, w, r.t)
	} else {
		r, aerr = n.lookupParsed(w, body)
	}
	if aerr != nil {
		return nil, aerr, true
	}
	out = append(out, `{"result":{"features":`...)
	out = r.plan.appendFeatures(out, w)
	return r.appendTail(out, w), nil, true
}

func quickTestNode(t testing.TB) *Node {
	n, _ := newTestNode(t, DefaultConfig())
	if _, err := n.IngestJSON(ingestBody(
		txn("alice", "m1", "FR", 10, t0-30_000),
		txn("alice", "m2", "FR", 20.5, t0-120_000),
		txn("7", "m1", "FR", 30, t0-3_600_000+1),
	)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nalice,48.85,2.35\n"), false); err != nil {
		t.Fatal(err)
	}
	return n
}

const quickBody = `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"alice","merchant":"m1","country":"FR"},"request_context_map":{"amt":12.5,"lat":48.8,"long":2.3}}}`

// TestQuickParseAnswersAsFastjson checks that every body quickParse takes
// is answered byte for byte as the fastjson path answers it, and that it
// leaves the others (options, escapes, duplicates, errors) to that path.
func TestQuickParseAnswersAsFastjson(t *testing.T) {
	n := quickTestNode(t)
	r := strings.NewReplacer
	taken := []string{
		quickBody,
		" \n{ \"params\" :\t{ \"request_context_map\" : { \"long\" : 2.3 , \"lat\" : 48.8 , \"amt\" : 12.5 } ,\r\n \"join_key_map\":{\"country\":\"FR\",\"merchant\":\"m1\",\"user_id\":\"alice\"}, \"feature_service_name\" : \"fraud_detection\" } } \n",
		r(`"alice"`, `7`).Replace(quickBody),
		r(`"alice"`, `0`).Replace(quickBody),
		r(`12.5`, `-0`).Replace(quickBody),
		r(`12.5`, `null`).Replace(quickBody),
		r(`12.5`, `1.25E1`).Replace(quickBody),
		r(`12.5`, `125e-1`).Replace(quickBody),
		r(`12.5`, `-0.000000000000000000000000001234`).Replace(quickBody),
		r(`12.5`, `12345678901234567890123.5`).Replace(quickBody),
		r(`12.5`, `0.1e+300`).Replace(quickBody),
		r(`48.8`, `48.800000000000000710542735760100185871124267578125`).Replace(quickBody),
		r(`"feature_service_name"`, `"workspace_name":"default","feature_service_name"`).Replace(quickBody),
		r(`"alice"`, `"ålice ✓"`).Replace(quickBody),
		r(`"alice"`, `"alicealicealicealice"`).Replace(quickBody),
		`{"params":{"request_context_map":{"amt":1,"lat":2,"long":3},"feature_service_name":"fraud_detection","join_key_map":{"user_id":"alice","merchant":"m1","country":"FR"}}}`,
	}
	for _, body := range taken {
		quick, qerr, accepted := lookupVia(n, []byte(body), true)
		if !accepted {
			t.Errorf("quickParse left %s to fastjson", body)
			continue
		}
		slow, serr, _ := lookupVia(n, []byte(body), false)
		if (qerr == nil) != (serr == nil) || !bytes.Equal(quick, slow) {
			t.Errorf("%s:\nquick %v %s\nslow  %v %s", body, qerr, quick, serr, slow)
		}
	}
	left := []string{
		``, `{}`, `{"params":{}}`, `[]`, quickBody + `x`, quickBody[:len(quickBody)-1],
		r(`"alice"`, `"al\"ice"`).Replace(quickBody),
		r(`"alice"`, `"al\u0069ce"`).Replace(quickBody),
		r(`"alice"`, `"alicealicealice\"x"`).Replace(quickBody),
		r(`"alice"`, `"alicealicealic\\"`).Replace(quickBody),
		r(`"alice"`, `-7`).Replace(quickBody),
		r(`"alice"`, `07`).Replace(quickBody),
		r(`"alice"`, `7.0`).Replace(quickBody),
		r(`"alice"`, `null`).Replace(quickBody),
		r(`"alice"`, `true`).Replace(quickBody),
		r(`"alice"`, `{}`).Replace(quickBody),
		r(`"user_id":"alice",`, ``).Replace(quickBody),
		r(`"user_id":"alice",`, `"user_id":"alice","user_id":"bob",`).Replace(quickBody),
		r(`"user_id":"alice",`, `"user_id":"alice","shop":"x",`).Replace(quickBody),
		r(`"amt":12.5,`, ``).Replace(quickBody),
		r(`"amt":12.5,`, `"amt":12.5,"amt":1,`).Replace(quickBody),
		r(`12.5`, `"12.5"`).Replace(quickBody),
		r(`12.5`, `true`).Replace(quickBody),
		r(`12.5`, `1e400`).Replace(quickBody),
		r(`12.5`, `.5`).Replace(quickBody),
		r(`12.5`, `1.`).Replace(quickBody),
		r(`12.5`, `+1`).Replace(quickBody),
		r(`12.5`, `[1]`).Replace(quickBody),
		r(`12.5`, `nul`).Replace(quickBody),
		r(`12.5`, `1-2`).Replace(quickBody),
		r(`"m1"`, `"m1`).Replace(quickBody),
		r(`"FR"}`, `"FR",}`).Replace(quickBody),
		r(`{"user_id"`, `{,"user_id"`).Replace(quickBody),
		r(`"fraud_detection"`, `"nope"`).Replace(quickBody),
		r(`"feature_service_name"`, `"workspace_name":"other","feature_service_name"`).Replace(quickBody),
		r(`"feature_service_name"`, `"as_of":1,"feature_service_name"`).Replace(quickBody),
		r(`"feature_service_name"`, `"metadata_options":{},"feature_service_name"`).Replace(quickBody),
		r(`"feature_service_name"`, `"featureServiceName"`).Replace(quickBody),
		r(`{"params":`, `{"x":1,"params":`).Replace(quickBody),
		r(`,"request_context_map":{"amt":12.5,"lat":48.8,"long":2.3}`, ``).Replace(quickBody),
	}
	for _, body := range left {
		if _, _, accepted := lookupVia(n, []byte(body), true); accepted {
			t.Errorf("quickParse took %s", body)
		}
	}
}

// FuzzQuickParse checks that a body quickParse takes is one the fastjson
// path answers, with the same bytes.
func FuzzQuickParse(f *testing.F) {
	f.Add([]byte(quickBody))
	f.Add([]byte(strings.Replace(quickBody, `"alice"`, `7`, 1)))
	f.Add([]byte(strings.Replace(quickBody, `12.5`, `-1.5e-7`, 1)))
	f.Add([]byte(strings.Replace(quickBody, `"alice"`, "\"al\xc3\xafce\"", 1)))
	f.Add([]byte(strings.Replace(quickBody, `"alice"`, "\"alice-\xed\xa0\x80\"", 1)))
	f.Add([]byte(strings.Replace(quickBody, `"alice"`, `"alice-\ud800\u0041"`, 1)))
	f.Add([]byte(strings.Replace(quickBody, `"alice"`, `"\ud83d\ude00"`, 1)))
	n := quickTestNode(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		quick, qerr, accepted := lookupVia(n, body, true)
		if !accepted {
			return
		}
		slow, serr, _ := lookupVia(n, body, false)
		if (qerr == nil) != (serr == nil) || !bytes.Equal(quick, slow) {
			t.Fatalf("%q:\nquick %v %s\nslow  %v %s", body, qerr, quick, serr, slow)
		}
	})
}

// TestMetadataTextsFollowStatuses checks the cached metadata texts: each
// feature's status says PRESENT exactly when its value is not null, over
// rows of different status patterns, each read twice (the second from the
// cache).
func TestMetadataTextsFollowStatuses(t *testing.T) {
	n := quickTestNode(t)
	users := []string{"alice", "7", "nobody", "alice", "nobody", "7"}
	for _, u := range users {
		body := strings.Replace(quickBody, `"alice"`, `"`+u+`"`, 1)
		out, aerr := n.GetFeatures(nil, []byte(body))
		if aerr != nil {
			t.Fatal(aerr)
		}
		v := decodeVector(t, out)
		for name, f := range v {
			if want := map[bool]string{true: "MISSING_DATA", false: "PRESENT"}[f.v == nil]; f.status != want {
				t.Errorf("user %s: %s = %v has status %s, want %s", u, name, f.v, f.status, want)
			}
		}
	}
	if c := n.services["fraud_detection"].metaTexts.Load(); c == nil || len(c.masks) < 2 {
		t.Fatalf("metadata texts cached: %+v, want at least 2 patterns", c)
	}
}

// checkQuickNumber compares quickScan.number on text with
// strconv.ParseFloat, for text that is an RFC 8259 number.
func checkQuickNumber(t *testing.T, text string) {
	t.Helper()
	if !tabular.IsJSONNumber([]byte(text)) {
		return
	}
	s := quickScan{b: []byte(text)}
	got, ok := s.number()
	want, err := strconv.ParseFloat(text, 64)
	if ok != (err == nil) || (ok && math.Float64bits(got) != math.Float64bits(want)) || (ok && s.i != len(text)) {
		t.Fatalf("number(%s) = %v, %v (read %d bytes); ParseFloat: %v, %v", text, got, ok, s.i, want, err)
	}
}

// TestQuickNumberMatchesStrconv checks quickParse's numbers against
// strconv.ParseFloat over random digits, lengths and exponents, through
// its three paths (exact, Eisel-Lemire, strconv).
func TestQuickNumberMatchesStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		if n > 1 && b[0] == '0' {
			b[0] = '1' + byte(r.IntN(9))
		}
		return string(b)
	}
	for _, s := range []string{"0", "-0", "0.0", "-0.0e5", "1e400", "-1e400", "1e-400", "4.9e-324", "2.5e-324", "1.7976931348623157e308",
		"1.7976931348623159e308", "9007199254740993", "35.02940107396863", "52.576612676972104", "0.1", "1e23", "8.98846567431158e307"} {
		checkQuickNumber(t, s)
	}
	for range 300_000 {
		s := digits(1 + r.IntN(20))
		if r.IntN(2) == 0 {
			s += "." + digits(1+r.IntN(20))
		}
		if r.IntN(3) == 0 {
			s += "e" + []string{"", "+", "-"}[r.IntN(3)] + strconv.Itoa(r.IntN(330))
		}
		if r.IntN(2) == 0 {
			s = "-" + s
		}
		checkQuickNumber(t, s)
	}
}

func FuzzQuickNumber(f *testing.F) {
	f.Add("35.02940107396863")
	f.Add("-52.576612676972104e-3")
	f.Add("1e400")
	f.Fuzz(func(t *testing.T, s string) { checkQuickNumber(t, s) })
}

// TestQuickStrFindsTheFirstQuote checks str's eight-bytes-at-a-time scan
// against a byte loop: strings of every length up to 40, ended by a quote,
// with a backslash or a control character (refused), a quote or bytes near
// them in value ('!', '#', '[', ']', ' ', 0x7f, 0x80+) at every position;
// and among valid multi-byte characters, which a byte put in their place
// may cut (then the string is not UTF-8, and refused).
func TestQuickStrFindsTheFirstQuote(t *testing.T) {
	want := func(b []byte) ([]byte, bool) {
		for n, c := range b[1:] {
			switch {
			case c == '"':
				if !utf8.Valid(b[1 : 1+n]) {
					return nil, false
				}
				return b[1 : 1+n], true
			case c == '\\' || c < 0x20:
				return nil, false
			}
		}
		return nil, false
	}
	for _, fillers := range [][]byte{
		{'a', '!', '#', '[', ']', ' ', 0x7f, 0x80 | '"', 0x80 | '\\', 0x80 | 0x1f, 0xa0, 0xff},
		[]byte("a\u00e9!\u2713#\U0001F600 \u07ff"),
	} {
		for l := 0; l <= 40; l++ {
			for at := 0; at <= l; at++ {
				for _, c := range append([]byte{'"', '\\', 0, '\t', 0x1f}, fillers...) {
					body := []byte{'"'}
					for i := 0; i < l; i++ {
						body = append(body, fillers[(i+l)%len(fillers)])
					}
					if at < l {
						body[1+at] = c
					}
					for _, end := range []string{`"`, `"xyz`, "\"\xc3\xa9", ``} {
						b := append(bytes.Clone(body), end...)
						s := quickScan{b: b}
						got, ok := s.str()
						w, wok := want(b)
						if ok != wok || !bytes.Equal(got, w) {
							t.Fatalf("%q: got %q %v, want %q %v", b, got, ok, w, wok)
						}
						if ok && s.i != len(w)+2 {
							t.Fatalf("%q: consumed %d, want %d", b, s.i, len(w)+2)
						}
					}
				}
			}
		}
	}
}

// skeletonOf learns the shape of body, which quickParse must take.
func skeletonOf(t testing.TB, n *Node, body string) *lookupSkeleton {
	t.Helper()
	w := &lookupWork{}
	p := n.quickParse(w, []byte(body))
	if p == nil {
		t.Fatalf("quickParse left %s", body)
	}
	k := learnSkeleton(p, []byte(body), w.spans)
	if k == nil {
		t.Fatalf("no skeleton of %s", body)
	}
	return k
}

// lookupViaSkeleton answers body through k; accepted is false when k
// does not take it.
func lookupViaSkeleton(n *Node, k *lookupSkeleton, body []byte) (out []byte, aerr *APIError, accepted bool) {
	w := &lookupWork{}
	if !k.read(n, w, body) {
		return nil, nil, false
	}
	r := oneLookup{plan: k.plan, now: n.now(), meta: defaultMeta}
	r.t = r.now
	if aerr = n.compute(k.plan, w, r.t); aerr != nil {
		return nil, aerr, true
	}
	out = append(out, `{"result":{"features":`...)
	out = r.plan.appendFeatures(out, w)
	return r.appendTail(out, w), nil, true
}

// skeletonShapes are bodies of different shapes whose skeletons the tests
// learn.
var skeletonShapes = []string{
	quickBody,
	" \n{ \"params\" :\t{ \"request_context_map\" : { \"long\" : 2.3 , \"lat\" : 48.8 , \"amt\" : 12.5 } ,\r\n \"join_key_map\":{\"country\":\"FR\",\"merchant\":\"m1\",\"user_id\":\"alice\"}, \"feature_service_name\" : \"fraud_detection\" } } \n",
	`{"params":{"request_context_map":{"amt":1,"lat":2,"long":3},"feature_service_name":"fraud_detection","workspace_name":"default","join_key_map":{"user_id":7,"merchant":"m1","country":"FR"}}}`,
}

// TestSkeletonReadsAsQuickParse: a body of a learned shape is read by its
// skeleton, whatever its values, and answered byte for byte as quickParse
// and fastjson answer it; a body of another shape, or one quickParse
// leaves to fastjson, is not read by any skeleton.
func TestSkeletonReadsAsQuickParse(t *testing.T) {
	n := quickTestNode(t)
	r := strings.NewReplacer
	var ks []*lookupSkeleton
	for _, b := range skeletonShapes {
		ks = append(ks, skeletonOf(t, n, b))
	}
	same := []string{
		quickBody,
		r(`"alice"`, `7`).Replace(quickBody),
		r(`"alice"`, `0`).Replace(quickBody),
		r(`"alice"`, `""`).Replace(quickBody),
		r(`"alice"`, `"nobody-at-all-with-a-long-name"`).Replace(quickBody),
		r(`"alice"`, `"ålice ✓"`).Replace(quickBody),
		r(`12.5`, `-0`).Replace(quickBody),
		r(`12.5`, `null`).Replace(quickBody),
		r(`12.5`, ` 1.25E1`).Replace(quickBody), // whitespace before a value is the value's reader's
		r(`12.5`, `12345678901234567890123.5`).Replace(quickBody),
		r(`48.8`, `48.800000000000000710542735760100185871124267578125`).Replace(quickBody),
		r(`"FR"`, `"US"`, `"m1"`, `"m2"`).Replace(quickBody),
	}
	for _, body := range same {
		sk, kerr, accepted := lookupViaSkeleton(n, ks[0], []byte(body))
		if !accepted {
			t.Errorf("the skeleton of %s left %s", quickBody, body)
			continue
		}
		slow, serr, _ := lookupVia(n, []byte(body), false)
		if (kerr == nil) != (serr == nil) || !bytes.Equal(sk, slow) {
			t.Errorf("%s:\nskeleton %v %s\nslow     %v %s", body, kerr, sk, serr, slow)
		}
	}
	// Another shape: taken by quickParse, by no skeleton but its own.
	other := []string{
		r(`"feature_service_name"`, `"workspace_name":"default","feature_service_name"`).Replace(quickBody),
		r(`{"user_id":"alice","merchant":"m1",`, `{"merchant":"m1","user_id":"alice",`).Replace(quickBody),
		r(`"amt":12.5,`, `"amt" :12.5,`).Replace(quickBody),
		quickBody + " ",
	}
	for _, body := range other {
		for i, k := range ks {
			if _, _, accepted := lookupViaSkeleton(n, k, []byte(body)); accepted {
				t.Errorf("the skeleton of %s took %s", skeletonShapes[i], body)
			}
		}
		if _, _, accepted := lookupVia(n, []byte(body), true); !accepted {
			t.Errorf("quickParse left %s", body)
		}
	}
	// What quickParse leaves to fastjson, no skeleton takes.
	left := []string{
		``, `{}`, quickBody + `x`, quickBody[:len(quickBody)-1],
		r(`"alice"`, `"al\"ice"`).Replace(quickBody),
		r(`"alice"`, `"al\u0069ce"`).Replace(quickBody),
		r(`"alice"`, `"alicealicealic\\"`).Replace(quickBody),
		r(`"alice"`, `-7`).Replace(quickBody),
		r(`"alice"`, `07`).Replace(quickBody),
		r(`"alice"`, `7.0`).Replace(quickBody),
		r(`"alice"`, `1234567890123456789`).Replace(quickBody),
		r(`"alice"`, `null`).Replace(quickBody),
		r(`"alice"`, `{}`).Replace(quickBody),
		r(`"alice"`, `"a","user_id":"b"`).Replace(quickBody),
		r(`12.5`, `"12.5"`).Replace(quickBody),
		r(`12.5`, `true`).Replace(quickBody),
		r(`12.5`, `1e400`).Replace(quickBody),
		r(`12.5`, `.5`).Replace(quickBody),
		r(`12.5`, `1.`).Replace(quickBody),
		r(`12.5`, `1-2`).Replace(quickBody),
		r(`12.5`, `12.5,"amt":1`).Replace(quickBody),
		r(`12.5`, `nul`).Replace(quickBody),
		r(`"m1"`, `"m1`).Replace(quickBody),
		r(`"fraud_detection"`, `"nope"`).Replace(quickBody),
	}
	for _, body := range left {
		if _, _, accepted := lookupVia(n, []byte(body), true); accepted {
			t.Fatalf("quickParse took %s: the test's premise is wrong", body)
		}
		for i, k := range ks {
			if _, _, accepted := lookupViaSkeleton(n, k, []byte(body)); accepted {
				t.Errorf("the skeleton of %s took %s", skeletonShapes[i], body)
			}
		}
		w := &lookupWork{}
		if p := n.parseLookup(w, []byte(body)); p != nil {
			t.Errorf("parseLookup took %s", body)
		}
	}
}

// TestParseLookupLearnsShapes: the first bodies of new shapes fill the
// slots; later ones replace a slot only every skeletonEvery bodies no
// skeleton read; a learned shape is read by its skeleton.
func TestParseLookupLearnsShapes(t *testing.T) {
	n := quickTestNode(t)
	w := &lookupWork{}
	parse := func(body string) {
		t.Helper()
		if n.parseLookup(w, []byte(body)) == nil {
			t.Fatalf("parseLookup left %s", body)
		}
	}
	parse(quickBody)
	if n.skels.slots[0].Load() == nil || n.skels.misses.Load() != 1 {
		t.Fatalf("first body: slot 0 %v, %d misses", n.skels.slots[0].Load(), n.skels.misses.Load())
	}
	for i := range 100 {
		parse(strings.Replace(quickBody, `"alice"`, `"user`+strconv.Itoa(i)+`"`, 1))
	}
	if got := n.skels.misses.Load(); got != 1 {
		t.Fatalf("%d misses after 100 bodies of the learned shape, want 1", got)
	}
	// Shapes that differ in whitespace: the first 3 fill the other slots,
	// the next skeletonEvery-1 are parsed by quickParse alone.
	shape := func(i int) string {
		return strings.Replace(quickBody, `"amt":`, `"amt"`+strings.Repeat(" ", i+1)+`:`, 1)
	}
	for i := range skeletonSlots - 1 {
		parse(shape(i))
	}
	for i := range n.skels.slots {
		if n.skels.slots[i].Load() == nil {
			t.Fatalf("slot %d empty after %d shapes", i, skeletonSlots)
		}
	}
	before := [skeletonSlots]*lookupSkeleton{}
	for i := range before {
		before[i] = n.skels.slots[i].Load()
	}
	for i := skeletonSlots - 1; n.skels.misses.Load()%skeletonEvery != skeletonEvery-1; i++ {
		parse(shape(i))
	}
	for i := range before {
		if n.skels.slots[i].Load() != before[i] {
			t.Fatalf("slot %d replaced before %d misses", i, skeletonEvery)
		}
	}
	parse(shape(100))
	replaced := 0
	for i := range before {
		if n.skels.slots[i].Load() != before[i] {
			replaced++
		}
	}
	if replaced != 1 {
		t.Fatalf("%d slots replaced at the %dth miss, want 1", replaced, skeletonEvery)
	}
	m := n.skels.misses.Load()
	parse(shape(100))
	if n.skels.misses.Load() != m {
		t.Fatal("the shape just learned was not read by its skeleton")
	}
}

// FuzzSkeleton checks that a body a learned skeleton reads is one
// quickParse reads, answered with the same bytes.
func FuzzSkeleton(f *testing.F) {
	for _, b := range skeletonShapes {
		f.Add([]byte(b))
	}
	f.Add([]byte(strings.Replace(quickBody, `"alice"`, `7`, 1)))
	f.Add([]byte(strings.Replace(quickBody, `12.5`, `-1.5e-7`, 1)))
	f.Add([]byte(strings.Replace(quickBody, `"alice"`, "\"\xc3\xa9\xff\"", 1)))
	f.Add([]byte(strings.Replace(quickBody, `"alice"`, `"al\udc00ce"`, 1)))
	n := quickTestNode(f)
	var ks []*lookupSkeleton
	for _, b := range skeletonShapes {
		ks = append(ks, skeletonOf(f, n, b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, k := range ks {
			sk, kerr, accepted := lookupViaSkeleton(n, k, body)
			if !accepted {
				continue
			}
			quick, qerr, qaccepted := lookupVia(n, body, true)
			if !qaccepted || (kerr == nil) != (qerr == nil) || !bytes.Equal(sk, quick) {
				t.Fatalf("%q:\nskeleton %v %s\nquick    %v %v %s", body, kerr, sk, qaccepted, qerr, quick)
			}
		}
	})
}
