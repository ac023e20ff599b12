#!/usr/bin/env bash
# The positive/negative-control predictions of docs/results.md ("Controls of the instrument"), measured with the
# toolkit's own commands. Usage: experiments/controls.sh OUT_DIR   (resumable: every run directory resumes).
# Suppression (b) leaves the dataset's answer-format words (`boxed`) out of the thinking and the random words
# (the default of `--method suppress` since 2026-12-02; decided after the first run's random draws all held
# `boxed`, before re-measuring: post hoc).
set -euo pipefail
O=${1:-runs/controls}
RL=${RL:-reasonlens}
N=${N:-200}          # held-out test problems per evaluation
NT=${NT:-200}        # training-split problems the thinking words are learnt from
B=${B:-50}           # batch size
T=${T:-200}          # max new tokens (plain runs)
BUDGETS=${BUDGETS:-80,120,160,200}
mkdir -p "$O"
R=organism-reasoner; NR=organism-reasoner-noreflect; D=organism-reasoner-direct
E="--limit $N --batch-size $B --max-new-tokens $T"

# (0) thinking words learnt on the TRAIN split (never on the evaluated problems)
$RL generate --model $R --split train --limit $NT --batch-size $B --max-new-tokens $T --layers -1 --out $O/r_train
$RL mi $O/r_train --permutations 49 | tee $O/r_train.mi.txt
$RL tokens $O/r_train --out $O/r_tokens.jsonl --top-words 30 | tee $O/r_tokens.txt

# (b) suppression: learnt top-k thinking words vs frequency-matched random words (3 seeds), on the reasoner and
# (b') on the no-reflection twin with words learnt on its own train traces (it shares every word but "Wait")
$RL generate --model $NR --split train --limit $NT --batch-size $B --max-new-tokens $T --layers -1 --out $O/n_train
$RL mi $O/n_train --permutations 49 | tee $O/n_train.mi.txt
$RL tokens $O/n_train --out $O/n_tokens.jsonl --top-words 30 | tee $O/n_tokens.txt
$RL eval --model $R $E --method baseline --out $O/base
$RL eval --model $NR $E --method baseline --out $O/n_base
for m in $R $NR; do
  p=$([ $m = $R ] && echo "" || echo n_)   # run-name prefix: reasoner runs keep their old names
  tr=$([ $m = $R ] && echo r || echo n)
  b=$([ $m = $R ] && echo base || echo n_base)
  for k in 5 10 20; do
    if [ "$(wc -l < $O/${tr}_tokens.jsonl)" -lt $k ]; then echo "$m: fewer than $k learnt words, k=$k skipped"; continue; fi
    $RL eval --model $m $E --method suppress --token-set $O/${tr}_tokens.jsonl --top-words $k --out $O/${p}sup$k
    for s in 0 1 2; do
      $RL eval --model $m $E --method suppress --token-set $O/${tr}_tokens.jsonl --top-words $k --control random \
          --control-run $O/${tr}_train --seed $s --out $O/${p}rand${k}_$s
    done
    $RL compare-eval $O/$b $O/${p}sup$k $O/${p}rand${k}_0 $O/${p}rand${k}_1 $O/${p}rand${k}_2 \
        --json $O/cmp_${p}sup$k.json | tee $O/cmp_${p}sup$k.txt
    for s in 0 1 2; do  # paired: thinking minus random, same problems (the random run is the reference)
      $RL compare-eval $O/${p}rand${k}_$s $O/${p}sup$k --json $O/cmp_${p}thinking_minus_rand${k}_$s.json \
          | tee $O/cmp_${p}thinking_minus_rand${k}_$s.txt
    done
  done
done

# (c) TTTS and budget forcing vs the truncated baseline, on the reasoner and on the no-reflection twin
for m in $R $NR; do
  tag=$([ $m = $R ] && echo r || echo n)
  $RL eval --model $m --limit $N --batch-size $B --method baseline --budgets $BUDGETS --out $O/${tag}_bbase
  $RL eval --model $m --limit $N --batch-size $B --method ttts --budgets $BUDGETS --out $O/${tag}_ttts
  $RL eval --model $m --limit $N --batch-size $B --method budget-force --budgets $BUDGETS --min-fraction 1.0 --out $O/${tag}_bf
  $RL compare-eval $O/${tag}_bbase $O/${tag}_ttts $O/${tag}_bf --json $O/cmp_${tag}_scaling.json | tee $O/cmp_${tag}_scaling.txt
done

# (a) peaks: enrichment of MI peaks on thinking words (held-out traces), Mean/AOM of reasoner vs direct twin
$RL generate --model $R --limit $N --batch-size $B --max-new-tokens $T --layers -1 --out $O/r_test
$RL generate --model $D --limit $N --batch-size $B --max-new-tokens 16 --layers -1 --out $O/d_test
$RL generate --model $NR --limit $N --batch-size $B --max-new-tokens $T --layers -1 --out $O/n_test
for run in r_test d_test n_test; do $RL mi $O/$run --permutations 49 | tee $O/$run.mi.txt; done
$RL compare $O/r_test $O/d_test | tee $O/compare_r_d.txt
$RL compare $O/r_test $O/n_test | tee $O/compare_r_n.txt

# (d) Representation Recycling at three layers, triggered by the learnt top-5 words
for l in 1 2 3; do
  $RL eval --model $R $E --method rr --token-set $O/r_tokens.jsonl --top-words 5 --rr-layer $l --out $O/rr$l
done
$RL compare-eval $O/base $O/rr1 $O/rr2 $O/rr3 --json $O/cmp_rr.json | tee $O/cmp_rr.txt

# the twins' plain accuracy on the same problems
$RL eval --model $D --limit $N --batch-size $B --max-new-tokens 16 --method baseline --out $O/d_base
$RL compare-eval $O/base $O/n_base $O/d_base --json $O/cmp_twins.json | tee $O/cmp_twins.txt

# (c') added after seeing (c): s1 budget forcing with ONE forced "Wait" (--max-waits 1). Repeated Waits (c) make
# the reasoner re-verify an already verified step, which it never saw in training; one Wait is the
# intervention the world was built for. Post hoc: reported beside (c), not instead of it.
for m in $R $NR; do
  tag=$([ $m = $R ] && echo r || echo n)
  $RL eval --model $m --limit $N --batch-size $B --method budget-force --budgets $BUDGETS --min-fraction 1.0 --max-waits 1 --out $O/${tag}_wait1
  $RL compare-eval $O/${tag}_bbase $O/${tag}_wait1 --json $O/cmp_${tag}_wait1.json | tee $O/cmp_${tag}_wait1.txt
done
