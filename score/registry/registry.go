package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxModelBytes bounds one downloaded file (and any JSON answer).
const MaxModelBytes = 1 << 30

// ErrNotFound is wrapped when the registry answers that the registered
// model, the alias or the version does not exist.
var ErrNotFound = errors.New("not found in the model registry")

// ErrUnusable is wrapped by Fetch when the version itself holds no ONNX
// file tally can read: its artifacts are missing, or their layout names no
// ONNX file (see the accepted layouts). Fetching it again gives the same
// answer; other Fetch errors (the server cannot be reached, answers 5xx)
// may pass.
var ErrUnusable = errors.New("the model version has no usable ONNX file")

// ErrFailedRegistration is wrapped by Resolve when the version's status is
// FAILED_REGISTRATION: MLflow will never make it READY, so resolving it
// again gives the same answer. It wraps ErrUnusable too.
var ErrFailedRegistration = errors.New("the model version's registration failed")

// unusableError is an error of the version's own artifacts: its message,
// matching ErrUnusable too.
type unusableError struct{ err error }

func (e unusableError) Error() string   { return e.err.Error() }
func (e unusableError) Unwrap() []error { return []error{e.err, ErrUnusable} }

// unusable marks err as the version's fault when the artifact store
// answered that what the version names does not exist.
func unusable(err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return unusableError{err}
	}
	return err
}

// Client talks to one MLflow tracking server. It is safe for concurrent
// use and keeps no state between calls.
type Client struct {
	base  string // tracking URI without a trailing slash
	token string
	http  *http.Client
}

// New returns a client of the tracking server at trackingURI (http or
// https); token, when set, is sent as a bearer token.
func New(trackingURI, token string) (*Client, error) {
	u, err := url.Parse(trackingURI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("MLflow tracking URI %q: set MLFLOW_TRACKING_URI to the tracking server's http(s) URL (e.g. http://127.0.0.1:5000)", trackingURI)
	}
	return &Client{base: strings.TrimRight(trackingURI, "/"), token: token,
		http: &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}}}, nil
}

// FromEnv returns a client of MLFLOW_TRACKING_URI, with the bearer token
// MLFLOW_TRACKING_TOKEN when set.
func FromEnv() (*Client, error) {
	uri := os.Getenv("MLFLOW_TRACKING_URI")
	if uri == "" {
		return nil, errors.New("a models:/ model needs the registry: set MLFLOW_TRACKING_URI to the MLflow tracking server's URL (and MLFLOW_TRACKING_TOKEN if it wants a token)")
	}
	return New(uri, os.Getenv("MLFLOW_TRACKING_TOKEN"))
}

// Version is a registered model version, as the registry describes it.
type Version struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Source  string `json:"source"`
	RunID   string `json:"run_id"`
	Status  string `json:"status"`
}

// Resolve returns the version an alias points to now (alias != "") or the
// given version. A version that is not READY is an error; Resolve returns
// it with the error. For FAILED_REGISTRATION the error wraps
// ErrFailedRegistration and ErrUnusable (the version's fault, for good);
// PENDING_REGISTRATION may pass.
func (c *Client) Resolve(ctx context.Context, name, alias, version string) (Version, error) {
	var out struct {
		ModelVersion Version `json:"model_version"`
	}
	var err error
	if alias != "" {
		err = c.getJSON(ctx, "/api/2.0/mlflow/registered-models/alias", url.Values{"name": {name}, "alias": {alias}}, &out)
	} else {
		err = c.getJSON(ctx, "/api/2.0/mlflow/model-versions/get", url.Values{"name": {name}, "version": {version}}, &out)
	}
	what := "models:/" + name + "/" + version
	if alias != "" {
		what = "models:/" + name + "@" + alias
	}
	if err != nil {
		return Version{}, fmt.Errorf("resolve %s: %w", what, err)
	}
	if out.ModelVersion.Version == "" {
		return Version{}, fmt.Errorf("resolve %s: the registry answered no model version", what)
	}
	switch v := out.ModelVersion; v.Status {
	case "", "READY":
	case "FAILED_REGISTRATION":
		return v, unusableError{fmt.Errorf("resolve %s: version %s is %s, not READY: %w", what, v.Version, v.Status, ErrFailedRegistration)}
	default:
		return v, fmt.Errorf("resolve %s: version %s is %s, not READY", what, v.Version, v.Status)
	}
	return out.ModelVersion, nil
}

// Fetch downloads v's ONNX file (see the accepted layouts in the package
// doc) and returns its bytes and its path in the artifact store.
func (c *Client) Fetch(ctx context.Context, v Version) ([]byte, string, error) {
	var out struct {
		ArtifactURI string `json:"artifact_uri"`
	}
	if err := c.getJSON(ctx, "/api/2.0/mlflow/model-versions/get-download-uri", url.Values{"name": {v.Name}, "version": {v.Version}}, &out); err != nil {
		return nil, "", fmt.Errorf("models:/%s/%s: download location: %w", v.Name, v.Version, err)
	}
	st, err := c.store(out.ArtifactURI)
	if err != nil {
		return nil, "", fmt.Errorf("models:/%s/%s: %w", v.Name, v.Version, err)
	}
	file, err := pickONNX(ctx, st)
	if err != nil {
		return nil, "", fmt.Errorf("models:/%s/%s at %s: %w", v.Name, v.Version, out.ArtifactURI, unusable(err))
	}
	data, err := st.read(ctx, file)
	if err != nil {
		return nil, "", fmt.Errorf("models:/%s/%s: download %s: %w", v.Name, v.Version, file, unusable(err))
	}
	return data, out.ArtifactURI + "/" + file, nil
}

// pickONNX chooses the ONNX file of an artifact directory ("" when the
// location is the file itself).
func pickONNX(ctx context.Context, st store) (string, error) {
	if strings.HasSuffix(st.root(), ".onnx") {
		if names, err := st.list(ctx); err != nil || len(names) == 0 {
			return "", nil // a file, not a directory
		}
	}
	names, err := st.list(ctx)
	if err != nil {
		return "", fmt.Errorf("list artifacts: %w", err)
	}
	var onnxFiles []string
	hasMLmodel := false
	for _, n := range names {
		hasMLmodel = hasMLmodel || n == "MLmodel"
		if strings.HasSuffix(n, ".onnx") {
			onnxFiles = append(onnxFiles, n)
		}
	}
	if hasMLmodel {
		b, err := st.read(ctx, "MLmodel")
		if err != nil {
			return "", fmt.Errorf("read MLmodel: %w", err)
		}
		var mm struct {
			Flavors map[string]map[string]any `yaml:"flavors"`
		}
		if err := yaml.Unmarshal(b, &mm); err != nil {
			return "", unusableError{fmt.Errorf("read MLmodel: %w", err)}
		}
		if fl, ok := mm.Flavors["onnx"]; ok {
			data, _ := fl["data"].(string)
			if data == "" || strings.Contains(data, "..") || path.IsAbs(data) {
				return "", unusableError{fmt.Errorf("MLmodel's onnx flavor names data %q: want a file in the model directory", data)}
			}
			return path.Clean(data), nil
		}
		if len(onnxFiles) == 0 {
			flavors := make([]string, 0, len(mm.Flavors))
			for f := range mm.Flavors {
				flavors = append(flavors, f)
			}
			sort.Strings(flavors)
			return "", unusableError{fmt.Errorf("the model has flavors %v and no onnx flavor or .onnx file: tally scores ONNX only; log it with mlflow.onnx.log_model (skl2onnx, onnxmltools) or log the .onnx file beside it", flavors)}
		}
	}
	switch len(onnxFiles) {
	case 1:
		return onnxFiles[0], nil
	case 0:
		return "", unusableError{fmt.Errorf("no .onnx file among %v: log the model with mlflow.onnx.log_model or log its .onnx file as an artifact of the registered directory", names)}
	}
	return "", unusableError{fmt.Errorf("several .onnx files %v and no MLmodel onnx flavor to choose one: register a directory holding one", onnxFiles)}
}

// store is an artifact location: a directory (or a file) to list and read.
type store interface {
	root() string
	list(ctx context.Context) ([]string, error) // top-level file names
	read(ctx context.Context, name string) ([]byte, error)
}

func (c *Client) store(uri string) (store, error) {
	switch {
	case strings.HasPrefix(uri, "mlflow-artifacts:"):
		u, err := url.Parse(uri)
		if err != nil {
			return nil, fmt.Errorf("artifact URI %q: %w", uri, err)
		}
		return proxyStore{c: c, dir: strings.Trim(u.Path, "/")}, nil
	case strings.HasPrefix(uri, "file:"):
		u, err := url.Parse(uri)
		if err != nil || u.Path == "" {
			return nil, fmt.Errorf("artifact URI %q is not a file URI", uri)
		}
		return fileStore(u.Path), nil
	case filepath.IsAbs(uri):
		return fileStore(uri), nil
	}
	scheme, _, _ := strings.Cut(uri, ":")
	return nil, fmt.Errorf("artifacts at %q (%s:) cannot be read by tally: serve them through the tracking server (`mlflow server` with --serve-artifacts, the default) so the registry answers an mlflow-artifacts: URI", uri, scheme)
}

// proxyStore reads through the tracking server's artifact proxy.
type proxyStore struct {
	c   *Client
	dir string
}

func (p proxyStore) root() string { return p.dir }

func (p proxyStore) list(ctx context.Context) ([]string, error) {
	var out struct {
		Files []struct {
			Path  string `json:"path"`
			IsDir bool   `json:"is_dir"`
		} `json:"files"`
	}
	if err := p.c.getJSON(ctx, "/api/2.0/mlflow-artifacts/artifacts", url.Values{"path": {p.dir}}, &out); err != nil {
		return nil, err
	}
	var names []string
	for _, f := range out.Files {
		if !f.IsDir {
			names = append(names, path.Base(f.Path))
		}
	}
	return names, nil
}

func (p proxyStore) read(ctx context.Context, name string) ([]byte, error) {
	full := p.dir
	if name != "" {
		full = path.Join(p.dir, name)
	}
	segs := strings.Split(full, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return p.c.get(ctx, "/api/2.0/mlflow-artifacts/artifacts/"+strings.Join(segs, "/"), nil)
}

// fileStore reads a local artifact root.
type fileStore string

func (f fileStore) root() string { return string(f) }

func (f fileStore) list(context.Context) ([]string, error) {
	ents, err := os.ReadDir(string(f))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func (f fileStore) read(_ context.Context, name string) ([]byte, error) {
	p := string(f)
	if name != "" {
		p = filepath.Join(p, filepath.FromSlash(name))
	}
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return readCapped(fh)
}

func readCapped(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxModelBytes+1))
	if err == nil && len(b) > MaxModelBytes {
		err = fmt.Errorf("larger than %d bytes", MaxModelBytes)
	}
	return b, err
}

func (c *Client) getJSON(ctx context.Context, p string, q url.Values, out any) error {
	b, err := c.get(ctx, p, q)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("GET %s: answer is not the expected JSON: %w", p, err)
	}
	return nil
}

func (c *Client) get(ctx context.Context, p string, q url.Values) ([]byte, error) {
	u := c.base + p
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", p, err)
	}
	defer resp.Body.Close()
	b, err := readCapped(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", p, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code    string `json:"error_code"`
			Message string `json:"message"`
		}
		msg := string(bytes.TrimSpace(b))
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			msg = e.Code + ": " + e.Message
		}
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		err := fmt.Errorf("GET %s: %s: %s", p, resp.Status, msg)
		switch {
		case resp.StatusCode == http.StatusNotFound || e.Code == "RESOURCE_DOES_NOT_EXIST" || e.Code == "INVALID_PARAMETER_VALUE" && strings.Contains(e.Message, "not found"):
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			err = fmt.Errorf("%w (set MLFLOW_TRACKING_TOKEN)", err)
		}
		return nil, err
	}
	return b, nil
}
