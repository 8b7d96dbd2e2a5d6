package features

import (
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Kafka is where a source's events stream from when they come from a Kafka
// topic (a `kafka:` block on the source): the node consumes it itself
// (package kafkasource), exactly once into the windows. A source with no
// such block takes events over HTTP only; one with it takes both.
type Kafka struct {
	Brokers []string // bootstrap host:port list
	Topic   string
	Group   string // consumer group; default "tally-<source>"
	// Format of a record's value: "json" (one JSON object per record).
	// Avro and Protobuf with a schema registry would be further formats
	// decoding to the same fields.
	Format string
	// Start is where a partition the node holds no offset of is read from:
	// "earliest" (the default: a backfill of what the topic retains) or
	// "latest".
	Start string
	// RecordTime takes an event's timestamp from the Kafka record's
	// timestamp instead of its timestamp field.
	RecordTime bool
	// Fields maps a source column (or the timestamp) to the value's field
	// that holds it, a dotted path into nested objects ("payment.amount");
	// a column not listed is read from the field of its own name.
	Fields map[string]string
	// DeadLetterTopic, if set, receives every rejected record as it was,
	// with headers saying why.
	DeadLetterTopic string
	// MaxLag, if > 0, makes /readyz answer 503 while any partition's lag
	// (records behind the high watermark) exceeds it.
	MaxLag int64
	SASL   *KafkaSASL
	TLS    *KafkaTLS
}

// KafkaSASL authenticates to the brokers. The password is read from the
// environment variable PasswordEnv, never from the repo.
type KafkaSASL struct {
	Mechanism   string // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	Username    string
	PasswordEnv string
}

// KafkaTLS encrypts the connection to the brokers; files are PEM. With no
// CAFile the system's roots verify the brokers.
type KafkaTLS struct {
	CAFile, CertFile, KeyFile, ServerName string
}

var kafkaMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// kafka reads a source's kafka block.
func (l *loader) kafka(file string, n *yaml.Node, s *Source) *Kafka {
	if isNull(n) {
		return nil
	}
	o := l.object(file, n, "source "+strconv.Quote(s.Name)+" kafka", "brokers", "topic", "group", "format", "start",
		"timestamp", "fields", "dead_letter_topic", "max_lag", "sasl", "tls")
	k := &Kafka{Topic: o.str("topic", true), Group: o.str("group", false), Format: o.str("format", false), Start: o.str("start", false)}
	for _, b := range o.seq("brokers", true) {
		if b.Kind != yaml.ScalarNode || !strings.Contains(b.Value, ":") {
			o.errorf(b, "brokers: expected host:port, found %s", describe(b))
			continue
		}
		k.Brokers = append(k.Brokers, b.Value)
	}
	if k.Group == "" {
		k.Group = "tally-" + s.Name
	}
	switch k.Format {
	case "":
		k.Format = "json"
	case "json":
	default:
		o.errorf(o.vals["format"], "format %q is not supported: use json (one JSON object per record)", k.Format)
	}
	switch k.Start {
	case "":
		k.Start = "earliest"
	case "earliest", "latest":
	default:
		o.errorf(o.vals["start"], "start %q: use earliest (read what the topic retains) or latest (only new records)", k.Start)
	}
	switch ts := o.str("timestamp", false); ts {
	case "", "field":
	case "record":
		k.RecordTime = true
	default:
		o.errorf(o.vals["timestamp"], "timestamp %q: use field (the value's %s field, or its mapping under fields) or record (the Kafka record's timestamp)", ts, s.Timestamp)
	}
	if v := o.vals["fields"]; !isNull(v) {
		if v.Kind != yaml.MappingNode {
			o.errorf(v, "fields: expected a mapping of source field to the record's field, found %s", describe(v))
		} else {
			k.Fields = map[string]string{}
			known := append([]string{s.Timestamp}, colNames(s.Columns)...)
			for i := 0; i+1 < len(v.Content); i += 2 {
				c, f := v.Content[i], v.Content[i+1]
				switch {
				case c.Kind != yaml.ScalarNode || !slices.Contains(known, c.Value):
					o.errorf(c, "fields: %s is not a field of the source%s: the source has %s", describe(c), suggest(c.Value, known), list(known))
				case k.Fields[c.Value] != "":
					o.errorf(c, "fields: %q is mapped twice: keep one", c.Value)
				case f.Kind != yaml.ScalarNode || f.Value == "":
					o.errorf(f, "fields: %s: expected the record's field name (a.b for nested), found %s", c.Value, describe(f))
				default:
					k.Fields[c.Value] = f.Value
				}
			}
		}
	}
	k.DeadLetterTopic = o.str("dead_letter_topic", false)
	if k.DeadLetterTopic == k.Topic && k.Topic != "" {
		o.errorf(o.vals["dead_letter_topic"], "dead_letter_topic is the topic itself: rejected records would be read again; name another topic")
	}
	if s := o.str("max_lag", false); s != "" {
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil || x < 0 {
			o.errorf(o.vals["max_lag"], "max_lag: expected a number of records (0: no limit), found %q", s)
		}
		k.MaxLag = x
	}
	if v := o.vals["sasl"]; !isNull(v) {
		so := l.object(file, v, o.what+" sasl", "mechanism", "username", "password_env")
		k.SASL = &KafkaSASL{Mechanism: strings.ToUpper(so.str("mechanism", true)), Username: so.str("username", true), PasswordEnv: so.str("password_env", true)}
		if k.SASL.Mechanism != "" && !slices.Contains(kafkaMechanisms, k.SASL.Mechanism) {
			so.errorf(so.vals["mechanism"], "mechanism %q: use %s", k.SASL.Mechanism, strings.Join(kafkaMechanisms, ", "))
		}
	}
	if v := o.vals["tls"]; !isNull(v) {
		to := l.object(file, v, o.what+" tls", "ca_file", "cert_file", "key_file", "server_name")
		k.TLS = &KafkaTLS{CAFile: to.str("ca_file", false), CertFile: to.str("cert_file", false), KeyFile: to.str("key_file", false), ServerName: to.str("server_name", false)}
		if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
			to.errorf(v, "cert_file and key_file go together (a client certificate): set both or neither")
		}
	}
	return k
}

// kafkaShared refuses s's kafka block where it clashes with an earlier
// source's: one topic consumed in one group by two sources (a cluster's
// group would spread the topic's partitions over both sources' members,
// each source missing the others' share), or a dead-letter topic that a
// source consumes (rejected records would be read again, and two sources
// could pass one back and forth for ever).
func (l *loader) kafkaShared(a at, s *Source) {
	k := s.Kafka
	for _, p := range l.repo.Sources {
		pk := p.Kafka
		if pk == nil {
			continue
		}
		switch {
		case pk.Topic == k.Topic && pk.Group == k.Group:
			l.errorf(a, "source %q kafka: topic %q in group %q is consumed by source %q too: in a cluster the group would split the topic's partitions between the two sources; give one its own group", s.Name, k.Topic, k.Group, p.Name)
		case pk.DeadLetterTopic != "" && pk.DeadLetterTopic == k.Topic:
			l.errorf(a, "source %q kafka: topic %q is the dead_letter_topic of source %q: its rejected records would be read again; name another dead-letter topic", s.Name, k.Topic, p.Name)
		case k.DeadLetterTopic != "" && k.DeadLetterTopic == pk.Topic:
			l.errorf(a, "source %q kafka: dead_letter_topic %q is consumed by source %q: rejected records would be read again; name another topic", s.Name, k.DeadLetterTopic, p.Name)
		}
	}
}

// yamlNode writes k as Load reads it, every default written out.
func (k *Kafka) yamlNode() *yaml.Node {
	ts := "field"
	if k.RecordTime {
		ts = "record"
	}
	brokers := sequence(k.Brokers...)
	brokers.Style = yaml.FlowStyle
	m := mapping("topic", k.Topic, "group", k.Group, "format", k.Format, "start", k.Start, "timestamp", ts)
	add(m, "brokers", brokers)
	if len(k.Fields) > 0 {
		f := mapping()
		keys := make([]string, 0, len(k.Fields))
		for c := range k.Fields {
			keys = append(keys, c)
		}
		slices.Sort(keys)
		for _, c := range keys {
			add(f, c, scalar(k.Fields[c]))
		}
		add(m, "fields", f)
	}
	if k.DeadLetterTopic != "" {
		add(m, "dead_letter_topic", scalar(k.DeadLetterTopic))
	}
	if k.MaxLag > 0 {
		add(m, "max_lag", scalar(strconv.FormatInt(k.MaxLag, 10)))
	}
	if k.SASL != nil {
		add(m, "sasl", mapping("mechanism", k.SASL.Mechanism, "username", k.SASL.Username, "password_env", k.SASL.PasswordEnv))
	}
	if k.TLS != nil {
		add(m, "tls", mapping("ca_file", k.TLS.CAFile, "cert_file", k.TLS.CertFile, "key_file", k.TLS.KeyFile, "server_name", k.TLS.ServerName))
	}
	return m
}
