// Package onnx evaluates ONNX-ML models (scikit-learn, XGBoost and LightGBM
// exports) in pure Go, with onnxruntime's numerics.
//
// Load or Parse a .onnx file into a *Model, which implements score.Scorer.
// A Model is immutable and safe for concurrent use.
//
// # Supported operators
//
// Loading refuses, with an error wrapping ErrUnsupported that names the
// operator and its domain, any graph using another operator, or using one
// in a way that would mix rows (Inspect still lists such a model's
// operators and inputs, marking the unsupported ones).
//
//	ai.onnx.ml  TreeEnsembleClassifier, TreeEnsembleRegressor (opsets 1, 3;
//	            *_as_tensor attributes), TreeEnsemble (opset 5, with
//	            BRANCH_MEMBER), LinearClassifier, LinearRegressor, Scaler,
//	            Normalizer, ZipMap, FeatureVectorizer, ArrayFeatureExtractor,
//	            Imputer, Binarizer, LabelEncoder (opsets 1-4),
//	            CategoryMapper, OneHotEncoder, SVMClassifier (support
//	            vectors; RBF or LINEAR kernel; no post transform),
//	            SVMRegressor (RBF or LINEAR kernel)
//	ai.onnx     Identity, Cast, Constant, ConstantOfShape, Shape (into
//	            Reshape), Reshape, Flatten, Squeeze, Unsqueeze, Concat,
//	            Slice, Gather, MatMul and Gemm (per-row by constant),
//	            Add, Sub, Mul, Div, Pow, Mod, Max, Min, Sum, Mean, Less,
//	            Greater, LessOrEqual, GreaterOrEqual, Equal, And, Or, Xor,
//	            Not, Where, Clip, Neg, Abs, Floor, Ceil, Round, Sign, Relu,
//	            IsNaN, IsInf, Log, Exp, Sqrt, Reciprocal, Tanh, Erf,
//	            Sigmoid, Softmax (last axis), ArgMax, ArgMin (last axis),
//	            ReduceSum/Mean/Max/Min/Prod/LogSumExp/LogSum/L1/L2/SumSquare
//	            (per-row axes), LpNormalization, Transpose (row axis
//	            first), TopK (last axis, constant k), Scan (only
//	            skl2onnx's distances to constant training rows, read by
//	            a Transpose: nearest neighbours with the Euclidean,
//	            Manhattan or Minkowski metric)
//
// Every per-row tensor is [N, d1, d2, ...] with known d1...: one row per
// input row; shapes are checked at load and elementwise operators
// broadcast as numpy does. Constants (initializers, Constant nodes) may
// broadcast over rows; operators whose inputs are all constants are
// evaluated at load. Graph inputs are float, double, int64 (fed from the
// float32 row values) or string tensors (ScoreStrings; an input of k
// strings per row takes k, named name[j] in StringInputs); with several
// numeric inputs, a row's values are split across them in input order.
// Strings are interned at load: every string the graph compares with,
// encodes or outputs has an id, and an input string that is none of them
// behaves as onnxruntime treats an unknown category (OneHotEncoder zeros,
// LabelEncoder and CategoryMapper defaults, Equal false).
//
// # Semantics
//
// Results match onnxruntime 1.22 (the parity test in this package compares
// about 160 models, converter outputs of scikit-learn, XGBoost, LightGBM
// and CatBoost and hand-built graphs, over 280,000 rows, some one row per
// call; labels identical, scores within 1e-6, relative beyond 1):
//
//   - Trees compare in the input's type: float32 thresholds for float input
//     (a value exactly on a threshold goes the BRANCH_LEQ true way), float64
//     for double input. Leaf weights accumulate in that type, in tree order.
//   - NaN fails every comparison except BRANCH_NEQ, unless the node's
//     nodes_missing_value_tracks_true is set, which sends it the true way.
//   - BRANCH_MEMBER (opset 5) is a chain of equality tests, as in
//     onnxruntime; TreeEnsemble's integer post_transform codes follow
//     onnxruntime's mapping (1 LOGISTIC, 2 SOFTMAX), which is what it runs.
//   - Aggregates SUM, AVERAGE, MIN, MAX; base values; post transforms NONE,
//     LOGISTIC, SOFTMAX, SOFTMAX_ZERO and PROBIT (onnxruntime's ErfInv
//     approximation, so PROBIT is within ~1e-3 of the true normal quantile);
//     the binary classifier conventions (weights for one class only expand
//     to two scores; a 0.5 threshold when all weights are positive).
//   - A single-target regressor applies only PROBIT, and only the first
//     weight of each leaf counts, as in onnxruntime.
//   - LinearClassifier/LinearRegressor, MatMul and Gemm scores are summed
//     as onnxruntime's x86 SGEMM (MLAS) sums them: from the bias (Gemm's
//     beta*C, the intercepts; a MatMul followed only by a bias Add counts
//     as the Gemm onnxruntime fuses it into), a float32 fused multiply-add
//     chain per block of inputs added in turn: blocks of 256 for MatMul and
//     Gemm (B packed), 1024 down to 128 for the linear models depending on
//     their number of scores. A MatMul by a 1-D constant is one GEMM per
//     row in onnxruntime, which MLAS runs in its M = 1 kernel: rounded
//     products added in groups of four, each group then added to the
//     sum. Other float32 arithmetic rounds each operation's result to
//     float32; Max and Min propagate NaN.
//   - A call of one row is a GEMM of M = 1 in onnxruntime, which MLAS runs
//     in another kernel where B is not packed (LinearClassifier,
//     LinearRegressor, SVMRegressor, the linear SVM kernel): eight lanes
//     adding inputs l, l+8, ... in order, reduced as its block of four
//     scores (then two, then one) does, then C. Score does the same when
//     it is given one row, so a model scores a row as onnxruntime does
//     alone or in a batch.
//   - SVMClassifier follows onnxruntime's float32 kernels (RBF: a
//     sequential sum of rounded squares, then glibc's expf, which is not
//     always the correctly rounded exp), float64 sums of float32
//     products for the pairwise decision values, libsvm's pairwise
//     coupling in float32 for probabilities; the label is the class with
//     most pairwise votes, the first on a tie. SVMRegressor sums the
//     coefficients times the kernels as the linear models' SGEMM, from rho.
//   - A float32 ReduceSum or ReduceMean over trailing axes adds each run
//     as Eigen's SSE reduction does in onnxruntime: packets of four from
//     the first 16-byte boundary, which depends on the run's place in the
//     batch, so a row can score differently in onnxruntime depending on
//     the rows beside it; Score reproduces the batch it is given (in
//     chunks of 1024 rows). ReduceLogSumExp rounds as float32 expf and log.
//   - TopK picks as onnxruntime's heap does (ties to the lower index, a
//     row of NaNs in the heap's own order); with k large for the axis
//     (log2(k)/log2(n) at least 0.725) as libstdc++'s nth_element and
//     sort do, which onnxruntime runs there: NaNs and sorted=0 order as
//     they leave them.
//   - Nearest-neighbour distances are float32 as in onnxruntime's Scan
//     body: squared differences summed in order (Euclidean), absolute
//     differences (raised to p: x*x*x for 3, else pow rounded to float32,
//     which can differ from glibc's powf by an ulp) summed as Eigen's
//     reduction (Manhattan, Minkowski).
//   - Imputer cycles its values over a row when there are as many as the
//     tensor's second dimension (the columns of [N, F]; the first axis of
//     a row of higher rank), as onnxruntime does, and imputes the first
//     everywhere otherwise; several values for an [N] input are refused.
//   - Cast to int32 (held as int64) truncates; NaN and values beyond int32
//     give math.MinInt32, as onnxruntime on x86.
//   - Where onnxruntime fails a call, Score does too (an error wrapping
//     score.ErrBadInput): NaN into Binarizer, an index out of range in
//     ArrayFeatureExtractor or Gather, an unknown category into a
//     OneHotEncoder with zeros=0; and a value no int64 holds (NaN, a
//     missing feature, or beyond int64) fed to an int64 graph input.
//
// # Output mapping
//
// The first int64 or string output of width 1 is the label
// (Prediction.Label; LabelString and the class index in Label for string
// labels). The first float output is the class scores
// (Prediction.Probabilities, in Classes() order; ZipMap outputs count), or
// Prediction.Value when that output has width 1 (a regressor's value, or
// beside a label a decision function or IsolationForest's anomaly score).
// Class labels come from the classifier operator, a ZipMap, or the
// constant a converter looks labels up in.
//
// # Cost and ownership
//
// Trees are compiled into one flat node array (false child next, true child
// by index; leaf weights contiguous); ensembles whose splits are all
// BRANCH_LEQ (or all BRANCH_LT) without missing tracks walk a branch-free
// layout, four rows at a time. Score walks blocks of up to 128 rows through
// one tree before the next. It allocates nothing per call in steady state:
// scratch buffers are pooled, and Probabilities reuse the backing array of
// the caller's out[i].Probabilities when it has room. Slices returned in
// Predictions belong to the caller; the Model keeps no reference to them
// or to rows.
//
// # Limits
//
// Parse allocates in proportion to the file: repeated fields are bounded by
// their bytes, tensors by the data they carry, tree copies by 4x the node
// count, tree depth by 1000, row width by 2^20. Files are capped at 1 GiB.
// External tensor data, sparse tensors, subgraphs (If, Loop, Scan),
// sequence and map inputs (DictVectorizer) are not supported.
//
// # Parity data
//
// score/onnx/parity/generate.sh installs pinned scikit-learn, skl2onnx,
// onnxmltools, XGBoost, LightGBM, CatBoost and onnxruntime into the
// repository's .venv and writes models, rows (and string columns) and
// onnxruntime's outputs into testdata/generated (gitignored). TestParity skips without them, or fails
// when TALLY_REQUIRE_PARITY=1. parity/bench_ort.py times onnxruntime on the
// benchmark model for comparison with BenchmarkRF100*.
package onnx
