#!/usr/bin/env bash
# "Results unchanged" battery (issue 17): runs a fixed set of greedy commands with a given reasonlens binary and
# writes OUT/digest.json, a canonical digest of every content field (completions, token ids, verdicts, MI arrays,
# token sets, depth curves) with wall times, paths and provenance stripped. Run it with the code before and after a
# refactor and compare:  experiments/unchanged.sh OLD_OUT /old/.venv/bin/reasonlens
#                        experiments/unchanged.sh NEW_OUT .venv/bin/reasonlens
#                        python experiments/unchanged_digest.py --compare OLD_OUT/digest.json NEW_OUT/digest.json
set -euo pipefail
O=${1:?usage: unchanged.sh OUT [REASONLENS]}
RL=${2:-reasonlens}
PY=$(dirname "$(command -v "$RL")")/python
export OMP_NUM_THREADS=1
mkdir -p "$O"
C="--model organism-cot --split test --limit 24 --batch-size 8"
R="--model organism-reasoner --split test --limit 24 --batch-size 8 --max-new-tokens 160"
$RL generate --model organism-reasoner --split train --limit 24 --batch-size 8 --max-new-tokens 160 --layers 1,-1 --out "$O/r_train"
$RL mi "$O/r_train" --permutations 9
$RL tokens "$O/r_train" --out "$O/r_tokens.jsonl" --top-words 10
$RL eval $C --method baseline --out "$O/cot_base"
$RL eval $C --method suppress --out "$O/cot_sup"
$RL eval $C --method rr --rr-layer 2 --out "$O/cot_rr"
$RL eval $C --method ttts --budgets 32,64 --out "$O/cot_ttts"
$RL eval $C --method budget-force --budgets 32,64 --out "$O/cot_bf"
$RL eval $R --method baseline --out "$O/r_base"
$RL eval $R --method suppress --token-set "$O/r_tokens.jsonl" --top-words 5 --out "$O/r_sup"
$RL eval $R --method suppress --token-set "$O/r_tokens.jsonl" --top-words 5 --control random --control-run "$O/r_train" --seed 0 --out "$O/r_rand"
$RL eval $R --method nowait --out "$O/r_nowait"
$RL eval --model tiny-llama --dataset gsm8k --limit 4 --batch-size 2 --max-new-tokens 24 --method baseline --out "$O/tiny_llama"
$RL eval --model tiny-qwen2 --dataset gsm8k --limit 4 --batch-size 2 --max-new-tokens 24 --method baseline --out "$O/tiny_qwen2"
$RL depth --model organism-recurrent --limit 24 --recurrence 1,4,16 --out "$O/depth" || true
"$PY" "$(dirname "$0")/unchanged_digest.py" "$O" > "$O/digest.json"
echo "digest: $O/digest.json"
