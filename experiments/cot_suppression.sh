#!/usr/bin/env bash
# organism-cot suppression table of docs/results.md: the top-k words learnt on the TRAIN split vs
# frequency-matched random words (3 seeds), k = 5, 10, 20, whole-word bans, the dataset's answer-format words
# (`boxed`) left out of both sides. Usage: experiments/cot_suppression.sh OUT_DIR   (resumable).
set -euo pipefail
O=${1:-runs/cot}
RL=${RL:-reasonlens}
mkdir -p "$O"
C="--model organism-cot --limit 100 --batch-size 25 --max-new-tokens 200"

$RL generate --model organism-cot --split train --limit 100 --batch-size 25 --max-new-tokens 200 --layers -1 --out $O/cot_train
$RL mi $O/cot_train | tee $O/cot_train.mi.txt
$RL tokens $O/cot_train --out $O/cot_tokens.jsonl --top-words 30 | tee $O/cot_tokens.txt
$RL eval $C --method baseline --out $O/base
for k in 5 10 20; do
  $RL eval $C --method suppress --token-set $O/cot_tokens.jsonl --top-words $k --out $O/tsup$k
  for s in 0 1 2; do
    # the organism's traces hold few usable non-thinking words: a k it cannot match is reported, not fatal
    $RL eval $C --method suppress --token-set $O/cot_tokens.jsonl --top-words $k --control random \
        --control-run $O/cot_train --seed $s --out $O/trand${k}_$s 2>&1 | tee $O/trand${k}_$s.log || true
  done
  runs=$(for s in 0 1 2; do [ -f $O/trand${k}_$s/summary.json ] && echo $O/trand${k}_$s; done || true)
  $RL compare-eval $O/base $O/tsup$k $runs --json $O/cmp_sup$k.json | tee $O/cmp_sup$k.txt
  for r in $runs; do  # paired: thinking minus random, same problems
    $RL compare-eval $r $O/tsup$k --json $O/cmp_thinking_minus_$(basename $r).json | tee $O/cmp_thinking_minus_$(basename $r).txt
  done
done
