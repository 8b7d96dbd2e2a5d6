#!/usr/bin/env bash
# One Apache Kafka broker (KRaft, broker and controller in one process) for tally's tests,
# benchmarks and demo, run from its Maven Central jars with the installed Java:
#
#   scripts/kafka.sh fetch        resolve the jars (cached; prints the classpath file)
#   scripts/kafka.sh start DIR    start a broker with its state in DIR, on free loopback ports
#                                 (the ports are kept in DIR, so a restart reuses them);
#                                 waits until it accepts clients and prints host:port
#   scripts/kafka.sh stop DIR     stop it (SIGTERM, then SIGKILL after 30 s); idempotent
#
# With TALLY_KAFKA_OWNER_PID set, start also stops the broker once that process exits.
#
# The version is scripts/kafka/pom.xml's (3.9.1). The jars are cached in
# ${TALLY_CACHE:-~/.cache/tally}/kafka (a Maven local repository and the classpath), so a
# second fetch is offline and instant.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${TALLY_CACHE:-$HOME/.cache/tally}/kafka
pom=$here/kafka/pom.xml
ver=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
cpfile=$cache/classpath-$ver.txt

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  if [ -s "$cpfile" ] && while IFS= read -r -d: j || [ -n "$j" ]; do [ -f "$j" ] || exit 1; done < "$cpfile"; then
    echo "$cpfile"; return
  fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
  command -v java >/dev/null || die "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"
  mkdir -p "$cache"
  mvn -q -B -f "$pom" -Dmaven.repo.local="$cache/m2" dependency:build-classpath \
    -Dmdep.outputFile="$cpfile.tmp" >&2 || die "resolving Kafka $ver from Maven Central failed (see above)"
  mv "$cpfile.tmp" "$cpfile"
  echo "$cpfile"
}

# Two free loopback ports below the kernel's ephemeral range: a port the kernel hands out for
# port 0 can be taken by an outgoing connection before the broker binds it (or when a restart
# reuses it); ports below the range never are (as internal/loopback does for the Go tests).
freeports() {
  python3 - <<'PY'
import random, socket
try:
    high = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except Exception:
    high = 32768
got = []
while len(got) < 2:
    p = random.randrange(20000, high)
    if p in got:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        got.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(*got)
PY
}

start() {
  local dir=${1:?usage: kafka.sh start DIR}
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  local cp; cp=$(cat "$(fetch)")
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    die "a broker already runs for $dir (pid $(cat "$dir/pid")): kafka.sh stop $dir"
  fi
  if [ ! -f "$dir/ports" ]; then freeports > "$dir/ports"; fi
  read -r port cport < "$dir/ports"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=1
PROPS
  cat > "$dir/log4j.properties" <<'PROPS'
log4j.rootLogger=WARN, file
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${kafka.logs.dir}/broker.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS
  local jvm=(java -Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    -Dkafka.logs.dir="$dir" -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$cp")
  if [ ! -f "$dir/data/meta.properties" ]; then
    # --cluster-id=ID in one argument: a base64url id may begin with '-' (1 start in 64),
    # which "-t ID" hands to the option parser as another option.
    local id; id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    "${jvm[@]}" kafka.tools.StorageTool format --cluster-id="$id" -c "$dir/server.properties" > "$dir/format.log" 2>&1 ||
      die "formatting $dir/data failed: $(cat "$dir/format.log")"
  fi
  : > "$dir/broker.log"
  nohup "${jvm[@]}" kafka.Kafka "$dir/server.properties" > "$dir/stdout.log" 2>&1 &
  echo $! > "$dir/pid"
  if [ -n "${TALLY_KAFKA_OWNER_PID:-}" ]; then
    # Stop the broker when its owner (a test binary) exits, even by a panic or SIGKILL.
    (bpid=$(cat "$dir/pid"); while kill -0 "$TALLY_KAFKA_OWNER_PID" 2>/dev/null && kill -0 "$bpid" 2>/dev/null; do sleep 2; done
     kill "$bpid" 2>/dev/null) </dev/null >/dev/null 2>&1 &
  fi
  for _ in $(seq 1 240); do
    if grep -q "Kafka Server started\|\] started (kafka.server.BrokerServer)\|Transition from STARTING to STARTED" "$dir/broker.log" 2>/dev/null &&
       (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "127.0.0.1:$port"; return
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || die "the broker exited: $(tail -20 "$dir/stdout.log" "$dir/broker.log")"
    sleep 0.25
  done
  die "the broker did not start within 60 s: see $dir/broker.log"
}

stop() {
  local dir=${1:?usage: kafka.sh stop DIR}
  [ -f "$dir/pid" ] || return 0
  local pid; pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$dir/pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) die "usage: kafka.sh fetch | start DIR | stop DIR" ;;
esac
