// Package features loads and validates a feature repository, written in
// YAML, and compiles its request-time expressions.
//
// Load reads every *.yaml and *.yml file at the root of a directory, in name
// order, and merges them: names are global, and a file may use what another
// defines. It returns a *Repo only if the whole repo is valid; otherwise it
// returns every problem found (not just the first), each an *Error of the
// form
//
//	fraud.yaml:42:7: feature view "user_counts": aggregation: unknown function "cnt" (did you mean "count"?): use one of count, sum, ...
//
// naming the file, line and column and saying what to change. Default loads
// the repo embedded in the binary (defaultrepo/fraud.yaml: the seed's fraud
// example). A Repo is immutable: share it, never modify it. Repo.YAML writes
// it back out with every default made explicit.
//
// # The YAML format
//
// A file is a mapping with any of six lists; all are optional.
//
//	sources:            # streams of events
//	  - name: transactions
//	    timestamp: timestamp   # the event-time field; default "timestamp"
//	    lateness: 5m           # default 5m; 0 allowed
//	    schema:                # field: type, in order; types string, float, int, bool
//	      user_id: string
//	      amt: float
//	      is_fraud: int
//	    labels: [is_fraud]     # carried into training data, never aggregated
//
//	entities:           # what features are about
//	  - name: user
//	    join_key: user_id      # the field naming one, in sources, tables and lookups
//
//	feature_views:      # sliding-window aggregations of a source per entity
//	  - name: user_transaction_amounts
//	    source: transactions
//	    entity: user
//	    aggregation_interval: 1h   # optional: tile size for every aggregation below
//	    aggregations:
//	      - {column: amt, function: mean, window: 1d}
//	      - {column: amt, function: sum, window: 7d, interval: 1d}   # per-aggregation override
//	      - {column: merchant, function: last_n, n: 5, window: 1h, interval: 0, name: recent_merchants}
//
//	table_views:        # bulk-loaded rows, the latest per entity
//	  - name: user_profile
//	    entity: user
//	    schema: {home_lat: float, home_long: float}   # the join key is implied
//
//	request_views:      # request-time features: expressions over the request
//	  - name: transaction_request
//	    request_schema: {amt: float, lat: float, long: float}   # strings feed models only
//	    features:
//	      - name: amt_to_user_mean_1d
//	        expression: request.amt / user_transaction_amounts.amt_mean_1d
//
//	feature_services:   # what one lookup returns, in this order
//	  - name: fraud_detection
//	    features:
//	      - user_transaction_amounts             # every feature of a view, in order
//	      - user_profile.home_lat                # or one feature
//	      - transaction_request
//
// Rules:
//
//   - Names (of sources, entities, views, services, fields, features) are
//     letters, digits and _, starting with a letter or _, at most 128 bytes.
//     Sources, entities, feature views, table views, request views and
//     feature services share one namespace: a name is used once in the repo.
//     "request" is reserved. Unknown fields are errors.
//   - Durations are one or more <integer><unit> terms, units ms, s, m, h and
//     d (24h): 500ms, 30s, 5m, 1h30m, 365d; positive, at most 36500d. A
//     lateness may also be 0 (or 0s), an interval 0 or exact.
//   - Sources: the timestamp field is not part of the schema (listing it
//     is an error); events carry it as RFC 3339 text or epoch milliseconds.
//     lateness is how far an event may trail its entity's newest event.
//   - Feature views: the entity's join key must be a string or int field of
//     the source. An aggregation reads one field, which may not be the join
//     key, a label or the timestamp. Functions: count, sum, mean, min, max,
//     last, last_n, last_distinct_n, distinct_count, stddev, variance.
//     sum, mean, min, max, stddev and variance need a float, int or bool
//     field (bool is 0 or 1); the others take any field. last_n and
//     last_distinct_n need n (1 to 1000) and are exact-only, and so is
//     distinct_count of a float, int or bool field.
//   - Interval (tile size): an aggregation's interval, else the view's
//     aggregation_interval, else the default for its window: exact up to
//     1d, 1h tiles up to 30d, 1d tiles beyond (see DefaultInterval); last_n
//     and last_distinct_n default to exact. The window must be a multiple of
//     the interval. With tiles, events in the oldest, partial tile (at most
//     one interval of time) are not counted; exact windows keep every event
//     and cost memory in proportion.
//   - Feature names: <view>.<column>_<function>_<window>, the window as
//     FormatWindow writes it (user_transaction_counts.amt_count_1m,
//     country_amount_stats.amt_mean_365d); last_n is
//     <column>_last_<n>_<window>, last_distinct_n
//     <column>_last_distinct_<n>_<window>. name: replaces the part after the
//     dot. Table features are <table>.<column>, request features
//     <view>.<name>. Feature names are unique within their view.
//   - Types: count and distinct_count are int64; last, last_n and
//     last_distinct_n of a string field are strings (lists for the _n
//     functions); every other aggregation, and every request feature, is a
//     float64.
//   - Request views: an expression reads request.<field> (declared in
//     request_schema), <feature_view>.<feature> and <table_view>.<column>,
//     all numeric (not strings, not lists). Request views cannot read other
//     request views: expressions are one level deep.
//   - Feature services list each feature once. A request feature may read
//     features the service does not list; the node computes them, and the
//     service's join keys include their entities'. The request context is
//     the union of the request schemas of the request views the service
//     uses; a field must have one type across them. A string request field
//     feeds a model only (model.inputs: request.<field>).
//   - A service's model (features.Model): inputs lists features in the
//     model's input order (default: every numeric one); string features
//     and request.<field> feed an ONNX model's string inputs.
//
// # Expressions
//
// CompileExpr compiles an expression to a flat postfix program over a
// bounded stack (at most MaxExprDepth values, MaxExprOps instructions,
// MaxExprLen bytes of source; longer or deeper expressions are refused when
// compiled). Expr.Eval then allocates nothing. Values are float64; operators,
// loosest first: || ; && ; < <= > >= == != (not chained) ; + - ; * / ;
// unary - and !. Comparisons and logic give 1 or 0; 0 is false, anything
// else true. Functions: haversine_km(lat1, lon1, lat2, lon2) (degrees in,
// km out, earth radius 6371.0088 km), sqrt, abs, log (natural), exp,
// pow(x, y), min and max (two or more arguments), floor, ceil, radians, sin,
// cos, tan, asin, acos, atan, atan2(y, x), and if(cond, then, else).
// if, && and || evaluate lazily. A result that reads a missing input, or is
// NaN or infinite (division by zero, log of 0), is not ok: the node reports
// it as MISSING_DATA, never as a number.
package features
