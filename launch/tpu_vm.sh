#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: create it (or reuse it), install this checkout on every worker,
# run the same command on all of them (jax.distributed detects the slice), copy the results
# back from the shared workdir, and delete the VM.
#
#   NAME=hsvae ZONE=us-central2-b TYPE=v4-32 BUCKET=my-bucket RUN=runs/dbpedia \
#     launch/tpu_vm.sh dbpedia [--config.K=V ...]
#
# Needs gcloud (authenticated, with a project set) and gsutil. Every worker mounts gs://BUCKET with
# gcsfuse at ~/bucket, so the workdir ~/bucket/RUN is one directory that all of them share (each
# writes its part of every checkpoint there). KEEP=1 keeps the VM for the next run.
set -euo pipefail
: "${NAME:?}" "${ZONE:?}" "${BUCKET:?a GCS bucket the workers share}" "${RUN:?a path inside the bucket}"
[[ $# -ge 1 ]] || { sed -n '2,11p' "$0" >&2; exit 2; }
config=$1
shift
TYPE=${TYPE:-v4-8}
VERSION=${VERSION:-tpu-ubuntu2204-base}
RESULTS=${RESULTS:-results/$(basename "$RUN")}
WORKDIR="\$HOME/bucket/$RUN"

tpu() { gcloud compute tpus tpu-vm "$@" --zone "$ZONE"; }
on_all() { tpu ssh "$NAME" --worker=all --command="$1"; }

if ! tpu describe "$NAME" >/dev/null 2>&1; then
  tpu create "$NAME" --accelerator-type "$TYPE" --version "$VERSION"
fi
if [[ "${KEEP:-0}" != 1 ]]; then
  trap 'tpu delete "$NAME" --quiet' EXIT
fi

git archive --format=tar.gz -o /tmp/hsvae-jax.tar.gz HEAD
tpu scp /tmp/hsvae-jax.tar.gz "$NAME":hsvae-jax.tar.gz --worker=all
on_all "rm -rf hsvae-jax && mkdir hsvae-jax && tar xzf hsvae-jax.tar.gz -C hsvae-jax && cd hsvae-jax \
  && python3 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]' \
  && (command -v gcsfuse || (sudo apt-get update -q && sudo apt-get install -yq gcsfuse)) \
  && mkdir -p ~/bucket && (mountpoint -q ~/bucket || gcsfuse --implicit-dirs $BUCKET ~/bucket)"
# Quoted for the remote shell: the config overrides reach every worker unchanged.
on_all "cd hsvae-jax && .venv/bin/hsvae train --config $config --workdir $WORKDIR $(printf '%q ' "$@")"
tpu ssh "$NAME" --worker=0 --command="cd hsvae-jax && .venv/bin/hsvae evaluate --workdir $WORKDIR --split test --probe"

mkdir -p "$RESULTS"
gsutil -m cp "gs://$BUCKET/$RUN/*.json" "gs://$BUCKET/$RUN/metrics.jsonl" "gs://$BUCKET/$RUN/vocab.txt" "$RESULTS/"
echo "results in $RESULTS"
