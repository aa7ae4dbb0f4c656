#!/usr/bin/env bash
# End-to-end test of evalkube on a real Kubernetes cluster (kind, CPU only):
#   1. checks that docker (with a running engine), kind, helm, kubectl, python3 and curl exist;
#   2. creates the kind cluster from kind-config.yaml (or reuses one of that name);
#   3. builds the API/operator image (Dockerfile) and the evaluator image
#      (evaluator-image/Dockerfile) and loads both into the cluster;
#   4. makes a namespace that enforces the "restricted" Pod Security Standard, with a model cache
#      and an artifacts PersistentVolumeClaim (kind's local-path storage);
#   5. trains the tiny test model INTO the model cache with a Job on the evaluator image, which
#      runs tests/evaluator_fixtures.py from a ConfigMap (the image has torch; the host needs none);
#   6. helm-installs the chart with the local images (imagePullPolicy Never), watching the namespace;
#   7. puts the tiny task into a ConfigMap, port-forwards the API, submits a CPU-only evaluation
#      with `curl POST /evaluate`, and `kubectl create -f examples/evaljob-cpu.yaml`;
#   8. waits for both to complete, prints their metrics, requires exact_match 1.0 from the REST job;
#   9. deletes the example EvalJob and checks its Job and results ConfigMap are garbage-collected;
#  10. deletes the cluster it created (KEEP_CLUSTER=1 keeps it); on failure first prints
#      diagnostics (objects, events, operator and API logs).
# Environment: CLUSTER (evalkube-e2e), NS (evalkube-e2e), KEEP_CLUSTER, TIMEOUT (seconds per wait,
# 900), LOCAL_PORT (18000), KIND_NODE_IMAGE, EVALUATOR_BUILD_ARGS (extra `docker build` arguments
# of the evaluator image; default "--build-arg CUDA_IMAGE=ubuntu:24.04": plain Ubuntu instead of
# the CUDA runtime base, as kind runs on CPU), and the binaries DOCKER, KIND, HELM, KUBECTL, PYTHON
# (default: from PATH).
set -euo pipefail

cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-evalkube-e2e}
NS=${NS:-evalkube-e2e}
RELEASE=evalkube
API_IMAGE=evalkube:e2e
EVALUATOR_IMAGE=evalkube-evaluator:e2e
TIMEOUT=${TIMEOUT:-900}
LOCAL_PORT=${LOCAL_PORT:-18000}
DOCKER=${DOCKER:-docker}
KIND=${KIND:-kind}
HELM=${HELM:-helm}
KUBECTL=${KUBECTL:-kubectl}
PYTHON=${PYTHON:-python3}
API=http://127.0.0.1:$LOCAL_PORT
WORK=$(mktemp -d)
CREATED_CLUSTER=0
PORT_FORWARD_PID=""

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'e2e-kind: %s\n' "$*" >&2; exit 1; }
k() { "$KUBECTL" --context "kind-$CLUSTER" --namespace "$NS" "$@"; }
# json EXPR: evaluates a Python expression over the JSON document `d` read from stdin.
json() { "$PYTHON" -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

diagnostics() {
  log "diagnostics"
  k get all,evaljobs,configmaps,pvc -o wide || true
  k describe evaljobs || true
  k get events --sort-by=.lastTimestamp | tail -n 40 || true
  k logs "deployment/$RELEASE-operator" --tail=200 || true
  k logs "deployment/$RELEASE-api" --tail=100 || true
  k logs --selector=app.kubernetes.io/managed-by=evalkube --tail=100 --prefix || true
}

teardown() {
  local rc=$?
  if [ -n "$PORT_FORWARD_PID" ]; then kill "$PORT_FORWARD_PID" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ]; then diagnostics; fi
  if [ "$CREATED_CLUSTER" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    log "deleting cluster $CLUSTER"
    "$KIND" delete cluster --name "$CLUSTER" || true
  elif [ "$CREATED_CLUSTER" = 1 ]; then
    log "keeping cluster $CLUSTER (kubectl context kind-$CLUSTER; kind delete cluster --name $CLUSTER)"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap teardown EXIT

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 3 s until it prints "ok" (then returns)
# or "failed" (then fails), for at most SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2 state
  shift 2
  while [ "$SECONDS" -lt "$deadline" ]; do
    state=$("$@" 2>/dev/null || true)
    case "$state" in
      ok) return 0 ;;
      failed) die "$what failed" ;;
    esac
    sleep 3
  done
  die "timed out waiting for $what (last state: ${state:-none})"
}

job_state() {
  case "$(k get job "$1" -o jsonpath='{.status.succeeded}/{.status.failed}')" in
    1/*) echo ok ;;
    */[1-9]*) echo failed ;;
  esac
}
evaljob_state() {
  case "$(k get evaljob "$1" -o jsonpath='{.status.phase}')" in
    Completed) echo ok ;;
    Failed | Cancelled) echo failed ;;
  esac
}
rest_job_state() {
  case "$(curl -fsS -H "$AUTH" "$API/jobs/$1" | json 'd["status"]')" in
    completed) echo ok ;;
    failed | cancelled) echo failed ;;
  esac
}
api_state() { if curl -fsS "$API/health" >/dev/null; then echo ok; fi; }
gone_state() { if ! k get "$@" >/dev/null 2>&1; then echo ok; fi; }

log "1. tools"
for tool in "$DOCKER" "$KIND" "$HELM" "$KUBECTL" "$PYTHON" curl; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER info failed)"

log "2. cluster $CLUSTER"
if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "reusing the existing cluster"
else
  CREATED_CLUSTER=1
  "$KIND" create cluster --name "$CLUSTER" --config kind-config.yaml --wait 180s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi

log "3. images"
read -r -a evaluator_build_args <<<"${EVALUATOR_BUILD_ARGS---build-arg CUDA_IMAGE=ubuntu:24.04}"
"$DOCKER" build --tag "$API_IMAGE" .
"$DOCKER" build --tag "$EVALUATOR_IMAGE" --file evaluator-image/Dockerfile \
  ${evaluator_build_args[@]+"${evaluator_build_args[@]}"} .
"$KIND" load docker-image --name "$CLUSTER" "$API_IMAGE" "$EVALUATOR_IMAGE"

log "4. namespace $NS (restricted Pod Security Standard) and volumes"
"$KUBECTL" --context "kind-$CLUSTER" create namespace "$NS" --dry-run=client -o yaml |
  "$KUBECTL" --context "kind-$CLUSTER" apply -f -
"$KUBECTL" --context "kind-$CLUSTER" label namespace "$NS" --overwrite \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
for claim in evalkube-models evalkube-artifacts; do
  k apply -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: $claim
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
EOF
done

log "5. tiny model into the model cache"
k create configmap evalkube-fixtures --from-file=tests/evaluator_fixtures.py --dry-run=client -o yaml | k apply -f -
k delete job make-tiny-model --ignore-not-found
k apply -f - <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: make-tiny-model
spec:
  backoffLimit: 0
  activeDeadlineSeconds: $TIMEOUT
  template:
    spec:
      restartPolicy: Never
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 1000
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: make
          image: $EVALUATOR_IMAGE
          imagePullPolicy: Never
          command: [python, -c, "from pathlib import Path; from evaluator_fixtures import make_tiny_model; print(make_tiny_model(Path('/cache/models')))"]
          env:
            - {name: PYTHONPATH, value: /fixtures}
            - {name: HOME, value: /tmp}
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
              drop: [ALL]
          volumeMounts:
            - {name: cache, mountPath: /cache}
            - {name: fixtures, mountPath: /fixtures}
            - {name: tmp, mountPath: /tmp}
      volumes:
        - {name: cache, persistentVolumeClaim: {claimName: evalkube-models}}
        - {name: fixtures, configMap: {name: evalkube-fixtures}}
        - {name: tmp, emptyDir: {}}
EOF
wait_for "$TIMEOUT" "job/make-tiny-model" job_state make-tiny-model
k logs job/make-tiny-model --tail=5

log "6. helm install"
"$HELM" upgrade --install "$RELEASE" charts/evalkube --kube-context "kind-$CLUSTER" --namespace "$NS" \
  --set image.repository=evalkube --set image.tag=e2e --set image.pullPolicy=Never \
  --set evaluator.image.repository=evalkube-evaluator --set evaluator.image.tag=e2e \
  --set evaluator.image.pullPolicy=Never \
  --set evaluator.modelCachePVC=evalkube-models --set evaluator.artifactsPVC=evalkube-artifacts \
  --set "watchNamespaces={$NS}" --set operator.verbose=true \
  --wait --timeout 10m
k rollout status "deployment/$RELEASE-operator" --timeout=300s
k rollout status "deployment/$RELEASE-api" --timeout=300s
# The API authenticates (api.auth=kubernetes, the default): the REST calls come from a tenant
# ServiceAccount bound to the chart README's submitter Role, with a token from `kubectl create token`.
k create serviceaccount e2e-submitter --dry-run=client -o yaml | k apply -f -
k create role evalkube-submitter --verb=create,get,list,patch --resource=evaljobs.evalkube.dev \
  --dry-run=client -o yaml | k apply -f -
k create rolebinding e2e-submitter --role=evalkube-submitter --serviceaccount="$NS:e2e-submitter" \
  --dry-run=client -o yaml | k apply -f -
AUTH="Authorization: Bearer $(k create token e2e-submitter)"

log "7. submit: REST and kubectl"
task=$("$PYTHON" -c 'import sys; sys.path.insert(0, "tests"); from pathlib import Path
from evaluator_fixtures import write_tiny_task; print(write_tiny_task(Path(sys.argv[1])))' "$WORK/task")
k create configmap evalkube-tinyqa --from-file="$WORK/task" --dry-run=client -o yaml | k apply -f -
k port-forward "svc/$RELEASE-api" "$LOCAL_PORT:80" >"$WORK/port-forward.log" 2>&1 &
PORT_FORWARD_PID=$!
wait_for 60 "the API at $API" api_state
request=$(cat <<EOF
{"model": "huggingface", "tasks": ["$task"], "num_gpus": 0, "batch_size": 1,
 "model_args": {"pretrained": "/cache/models/tiny-qwen2", "device_map": "cpu"},
 "custom_tasks": {"config_map": "evalkube-tinyqa"},
 "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}}
EOF
)
job_id=$(curl -fsS -X POST "$API/evaluate" -H "$AUTH" -H 'Content-Type: application/json' -d "$request" | json 'd["job_id"]')
echo "REST job: $job_id"
# `create`, not `apply`: the EvalJob has a generateName. On a reused cluster the example's task
# ConfigMap exists already (AlreadyExists), which is fine as long as the EvalJob was created.
example=$(k create -f examples/evaljob-cpu.yaml -o name 2>"$WORK/create.err" | sed -n 's|^evaljob[^/]*/||p') || true
[ -n "$example" ] || die "examples/evaljob-cpu.yaml created no EvalJob: $(cat "$WORK/create.err")"
echo "kubectl EvalJob: $example"

log "8. results"
wait_for "$TIMEOUT" "REST job $job_id" rest_job_state "$job_id"
wait_for "$TIMEOUT" "EvalJob $example" evaljob_state "$example"
k get evaljobs
curl -fsS -H "$AUTH" "$API/jobs/$job_id" >"$WORK/rest-job.json"
echo "REST job $job_id metrics:"
json 'json.dumps(d["metrics"]["results"], indent=2)' <"$WORK/rest-job.json"
echo "EvalJob $example metrics:"
k get evaljob "$example" -o json | json 'json.dumps(d["status"]["metrics"]["results"], indent=2)'
score=$(json "d['metrics']['results']['$task']['exact_match,none']" <"$WORK/rest-job.json")
[ "$score" = 1.0 ] || die "exact_match of the tiny model is $score, expected 1.0"

log "9. deleting an EvalJob deletes its Job and results ConfigMap"
k delete evaljob "$example" --wait=true --timeout=120s
wait_for 120 "garbage collection of job/$example" gone_state job "$example"
wait_for 120 "garbage collection of configmap/$example-result" gone_state configmap "$example-result"

log "e2e passed"
