#!/bin/sh
# The labelled matrix's models, made once at build time for the unit tests that read them
# (test_matrix, test_lsh): every derivation kind and every hard negative, from seeds.
#   matrix-models.sh MKMODEL STAMP   models in the directory STAMP.d, then STAMP written
set -eu
case $1 in /*) mk=$1 ;; *) mk=$PWD/$1 ;; esac
case $2 in /*) stamp=$2 ;; *) stamp=$PWD/$2 ;; esac
out=$stamp.d
rm -rf "$out" "$out.part"
mkdir -p "$out.part"
cd "$out.part"
run() { "$mk" "$@" >/dev/null; }
# bases
run create base --arch llama --seed 1
run create indep --arch llama --seed 2
run create base-sharded --arch llama --seed 1 --shards 3
run create gbase --arch gpt2 --seed 3
run create gindep --arch gpt2 --seed 4
run create gqa --arch llama --seed 5 --heads 8 --kv-heads 2 --dtype bf16
run create gqa-indep --arch llama --seed 6 --heads 8 --kv-heads 2 --dtype bf16
# llama derivations
run derive base ft --kind finetune --seed 11 --drift 0.02
run derive base ft-large --kind finetune --seed 12 --drift 0.3
run derive ft ft2 --kind finetune --seed 13 --drift 0.05
run derive base lora --kind lora --seed 14
run derive base f16 --kind convert --dtype f16
run derive base bf16 --kind convert --dtype bf16
run derive base int8 --kind quant-int8
run derive base q4 --kind quant-q4
run derive base prune-layers --kind prune-layers --drop 1
run derive base prune-mlp --kind prune-mlp --keep-frac 0.75 --seed 15
run derive base vocab --kind vocab-extend --add 64 --seed 16
run derive base perm-mlp --kind permute-mlp --seed 17
run derive base perm-heads --kind permute-heads --seed 18
run derive base student --kind student --seed 19
run derive base renamed --kind rename
run derive base resharded --kind reshard --shards 2
run derive base copy --kind copy
run derive base forged --kind forge --seed 20
run derive ft ft-q4 --kind quant-q4
run derive indep indep-bf16 --kind convert --dtype bf16
run derive gqa gqa-ft --kind finetune --seed 21 --drift 0.05
run derive gqa gqa-perm-heads --kind permute-heads --seed 22
# GGUF (llama.cpp) conversions: ggml block quantisation and the converter's Q/K row order
run derive base ft-wide --kind finetune --seed 23 --drift 0.2
run gguf base base-q8_0.gguf --type q8_0
run gguf base base-q4_k.gguf --type q4_k
run gguf base base-q6_k.gguf --type q6_k
run gguf indep indep-q8_0.gguf --type q8_0
run gguf ft-wide ft-wide-q4_k.gguf --type q4_k
# gpt2 derivations
run derive gbase gft --kind finetune --seed 31 --drift 0.05
run derive gbase gint8 --kind quant-int8
run derive gbase gperm-mlp --kind permute-mlp --seed 32
run derive gbase gprune-mlp --kind prune-mlp --keep-frac 0.75 --seed 33
run derive gbase gvocab --kind vocab-extend --add 64 --seed 34
run derive gbase gperm-heads --kind permute-heads --seed 35
run derive gbase grenamed --kind rename
run derive gbase gstudent --kind student --seed 36
run derive gbase gforged --kind forge --seed 37
# function-preserving disguises, merges, smuggling (issue 11)
run create third --arch llama --seed 9
run derive base rot --kind rotate --seed 41
run derive ft rot-ft --kind rotate --seed 42
run derive rot rot-scale --kind scale --seed 43
run derive rot-scale rot-scale-perm --kind permute-mlp --seed 44
run derive base scaled --kind scale --seed 45
run derive base noisy --kind noise --seed 46
run derive ft soup --kind soup --with lora
run derive base stitch --kind stitch --with indep
run derive base moe --kind upcycle --experts 4
run derive base smuggled --kind smuggle --with indep
run derive gqa gqa-rot --kind rotate --seed 47
run derive indep indep-rot --kind rotate --seed 48
run derive rot-ft rot-ft-int8 --kind quant-int8
run gguf rot rot-q8_0.gguf --type q8_0
run gguf rot rot-q4_k.gguf --type q4_k
run gguf rot rot-q6_k.gguf --type q6_k
# GPT-2 (LayerNorm) rotation: the stream centred first, the norms folded, the head untied
run derive gbase grot --kind rotate --seed 49
run derive gft grot-ft --kind rotate --seed 50
run derive gindep gindep-rot --kind rotate --seed 51
mv "$out.part" "$out"
: >"$stamp"
