package features

import (
	"bytes"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/tally-ml/tally/windows"
)

// YAML returns r as one canonical YAML file that Load reads back into an
// equal Repo: every default written out (timestamp, lateness, each
// aggregation's interval, with 0 for exact), durations in FormatWindow's
// form, expressions in Expr.String's form, and services listing single
// features. Use it to see what a repo means after defaults.
func (r *Repo) YAML() []byte {
	root := mapping()
	if len(r.Sources) > 0 {
		seq := sequence()
		for _, s := range r.Sources {
			m := mapping("name", s.Name, "timestamp", s.Timestamp, "lateness", FormatWindow(s.Lateness))
			add(m, "schema", schema(s.Columns))
			if len(s.Labels) > 0 {
				labels := sequence(s.Labels...)
				labels.Style = yaml.FlowStyle
				add(m, "labels", labels)
			}
			if s.Kafka != nil {
				add(m, "kafka", s.Kafka.yamlNode())
			}
			seq.Content = append(seq.Content, m)
		}
		add(root, "sources", seq)
	}
	if len(r.Entities) > 0 {
		seq := sequence()
		for _, e := range r.Entities {
			seq.Content = append(seq.Content, mapping("name", e.Name, "join_key", e.JoinKey))
		}
		add(root, "entities", seq)
	}
	if len(r.Views) > 0 {
		seq := sequence()
		for _, v := range r.Views {
			m := mapping("name", v.Name, "source", v.Source.Name, "entity", v.Entity.Name)
			aggs := sequence()
			for i, a := range v.Spec.Aggregations {
				col := v.Spec.Columns[a.Column].Name
				am := mapping("column", col, "function", a.Func.String(), "window", FormatWindow(a.Window), "interval", interval(a.Interval))
				if a.Func == windows.LastN || a.Func == windows.LastDistinctN {
					add(am, "n", scalar(strconv.Itoa(a.N)))
				}
				if name := v.Features[i].Name; name != defaultFeatureName(col, a.Func, a.N, a.Window) {
					add(am, "name", scalar(name))
				}
				am.Style = yaml.FlowStyle
				aggs.Content = append(aggs.Content, am)
			}
			add(m, "aggregations", aggs)
			seq.Content = append(seq.Content, m)
		}
		add(root, "feature_views", seq)
	}
	if len(r.Tables) > 0 {
		seq := sequence()
		for _, t := range r.Tables {
			m := mapping("name", t.Name, "entity", t.Entity.Name)
			add(m, "schema", schema(t.Columns))
			seq.Content = append(seq.Content, m)
		}
		add(root, "table_views", seq)
	}
	if len(r.Requests) > 0 {
		seq := sequence()
		for _, q := range r.Requests {
			m := mapping("name", q.Name)
			if len(q.RequestSchema) > 0 {
				add(m, "request_schema", schema(q.RequestSchema))
			}
			feats := sequence()
			for _, f := range q.Features {
				feats.Content = append(feats.Content, mapping("name", f.Name, "expression", f.Expr.String()))
			}
			add(m, "features", feats)
			seq.Content = append(seq.Content, m)
		}
		add(root, "request_views", seq)
	}
	if len(r.Services) > 0 {
		seq := sequence()
		for _, s := range r.Services {
			feats := sequence()
			for _, ref := range s.Features {
				feats.Content = append(feats.Content, scalar(r.FeatureName(ref)))
			}
			m := mapping("name", s.Name)
			add(m, "features", feats)
			if md := s.Model; md != nil {
				mm := mapping()
				if md.ONNX != "" {
					add(mm, "onnx", scalar(md.ONNX))
				}
				if md.MLflow != "" {
					add(mm, "mlflow", scalar(md.MLflow))
				}
				if md.TokenEnv != "" {
					add(mm, "token_env", scalar(md.TokenEnv))
				}
				ins := sequence()
				for _, ref := range md.Inputs {
					ins.Content = append(ins.Content, scalar(r.ModelInputName(s, ref)))
				}
				add(mm, "inputs", ins)
				add(mm, "on_error", scalar(md.OnError))
				add(mm, "max_rows", scalar(strconv.Itoa(md.MaxRows)))
				wait := "0"
				if md.MaxWait > 0 {
					wait = FormatWindow(md.MaxWait)
				}
				add(mm, "max_wait", scalar(wait))
				add(mm, "queue_rows", scalar(strconv.Itoa(md.QueueRows)))
				add(mm, "max_in_flight", scalar(strconv.Itoa(md.MaxInFlight)))
				add(mm, "timeout", scalar(FormatWindow(md.Timeout)))
				if md.Registry != nil {
					add(mm, "poll", scalar(FormatWindow(md.Poll)))
				}
				add(m, "model", mm)
			}
			seq.Content = append(seq.Content, m)
		}
		add(root, "feature_services", seq)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if len(root.Content) > 0 {
		if err := enc.Encode(root); err != nil {
			panic("features: encode repo: " + err.Error()) // a tree of strings always encodes
		}
	}
	enc.Close()
	return b.Bytes()
}

func interval(ms int64) string {
	if ms == 0 {
		return "exact"
	}
	return FormatWindow(ms)
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func mapping(kv ...string) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(kv); i += 2 {
		add(m, kv[i], scalar(kv[i+1]))
	}
	return m
}

func sequence(items ...string) *yaml.Node {
	s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, it := range items {
		s.Content = append(s.Content, scalar(it))
	}
	return s
}

func add(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, scalar(key), v)
}

func schema(cols []Column) *yaml.Node {
	m := mapping()
	for _, c := range cols {
		add(m, c.Name, scalar(c.Type.String()))
	}
	return m
}
