#!/bin/bash
# 5-way 5-shot adapt mode on the validation split: inner learning rate, steps and head, for the
# shipped BMSSL and MetaSSL+zeroing checkpoints of the 1250-step study (seed 0). 500 episodes, seed 0.
export BMSSL_DATA=/work/main/data
B=/work/runs/bmssl-v5
O=/work/runs/adapt5
for m in bmssl-add03-qs-zh metassl-zh metassl; do
  C=/work/runs/bmssl-study/parts/$m
  for cfg in "0.4 5 zero" "0.2 5 zero" "0.1 5 zero" "0.1 10 zero" "0.4 5 proto" "0.1 5 proto" "0.4 1 zero"; do
    set -- $cfg
    f=$O/$m-lr$1-steps$2-$3.json
    [ -s $f ] && continue
    nice -n 5 $B eval --checkpoint $C --split val --setting 5w5s --episodes 500 --adapt-lr $1 --adapt-steps $2 --head $3 --threads 1 --quiet --json $f > /dev/null 2>> $O/log.txt
  done
done
# The one-step MetaSSL at 1250 steps (horizon-1250.toml), 5w1s, 5 and 10 test-time steps:
C=/work/runs/bmssl-horizon-1250/parts/metassl-zh-L1
for s in 5 10; do
  $B eval --checkpoint $C --split val --setting 5w1s --episodes 500 --adapt-steps $s --threads 1 --quiet --json $O/L1-metassl-zh-steps$s.json
done
# (the metassl-zh and metassl rows of the loop above were not reached this session)
