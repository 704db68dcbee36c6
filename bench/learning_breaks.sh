#!/usr/bin/env bash
# Shows that tests/test_learning.py can fail: breaks the loss, the augmentation or the
# optimiser on purpose in a scratch copy of HEAD and runs the learning test on each.
#   bash bench/learning_breaks.sh     (about a minute; every "== ..." block should FAIL)
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
for BREAK in loss augmentation optimiser; do
  D=$(mktemp -d); git archive HEAD | tar -x -C "$D"
  case $BREAK in  # the gradient's sign; positives from other images; the step never applied
    loss) sed -i 's/return grad_anchors, grad_candidates, None/return -grad_anchors, -grad_candidates, None/' "$D/src/simclr/losses/ntxent.py" ;;
    augmentation) sed -i 's/augment(inputs\[view\], generator/augment(inputs[view].roll(view, 0), generator/' "$D/src/simclr/data/pipelines/base.py" ;;
    optimiser) sed -i 's/p.sub_(state\["momentum_buffer"\])/p.sub_(state["momentum_buffer"] * 0)/' "$D/src/simclr/optim/lars.py" ;;
  esac
  if diff -rq src "$D/src" > /dev/null; then echo "== $BREAK: the break did not apply"; continue; fi
  echo "== $BREAK"
  (cd "$D" && PYTHONPATH="$D/src" "$PY" -m pytest tests/test_learning.py -q -s -p no:cacheprovider 2>&1 | grep -E "few-label|passed|failed")
  rm -rf "$D"
done
