package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/bench"
	"github.com/tally-ml/tally/features"
)

const demoTopic = "tally-demo-transactions"

// kafkaDemo is `tally demo --kafka`: the demo's transactions go to a topic,
// and the node consumes them (the repo's transactions source gets a kafka
// block), instead of arriving over HTTP.
type kafkaDemo struct{ cl *kgo.Client }

func newKafkaDemo(broker string, repo *features.Repo) (*kafkaDemo, error) {
	src, ok := repo.Source("transactions")
	if !ok {
		return nil, errors.New("--kafka: the repo has no transactions source")
	}
	src.Kafka = &features.Kafka{Brokers: []string{broker}, Topic: demoTopic, Group: "tally-demo", Format: "json", Start: "latest"}
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DefaultProduceTopic(demoTopic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, 8, 1, nil, demoTopic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		cl.Close()
		return nil, fmt.Errorf("--kafka %s: create topic %s: %w (start a broker with scripts/kafka.sh start DIR)", broker, demoTopic, err)
	}
	return &kafkaDemo{cl: cl}, nil
}

// produce sends each line of ndjson as one record keyed by its user.
func (k *kafkaDemo) produce(ctx context.Context, ndjson []byte) error {
	var recs []*kgo.Record
	for _, line := range bytes.Split(bytes.TrimSpace(ndjson), []byte("\n")) {
		key := line
		if i := bytes.Index(line, []byte(`"user_id":"`)); i >= 0 {
			key = line[i+11:]
			if j := bytes.IndexByte(key, '"'); j >= 0 {
				key = key[:j]
			}
		}
		recs = append(recs, &kgo.Record{Key: key, Value: line})
	}
	return k.cl.ProduceSync(ctx, recs...).FirstErr()
}

// demoClusterKafka is `tally demo --kafka ADDR --nodes N`: the default
// repo, its transactions source consumed from the demo topic by every
// node in one group, written under dir for the nodes' --repo.
func demoClusterKafka(broker, repoFlag, dir string) (*kafkaDemo, []string, error) {
	if broker == "" {
		return nil, nil, nil
	}
	if repoFlag != "" {
		return nil, nil, errors.New("--kafka with --nodes streams the default repo: leave out --repo")
	}
	repoDir := filepath.Join(dir, "kafka-repo")
	if err := bench.WriteKafkaRepo(repoDir, broker, demoTopic, "tally-demo", "latest"); err != nil {
		return nil, nil, err
	}
	repo, err := features.Default()
	if err != nil {
		return nil, nil, err
	}
	prod, err := newKafkaDemo(broker, repo)
	if err != nil {
		return nil, nil, err
	}
	return prod, []string{"--repo", repoDir}, nil
}
