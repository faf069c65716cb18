# moba.c build. Two commands matter (README): `make run` builds and runs the main job (the GPU trainer
# when a GPU is present, else the CPU reference on the built-in synthetic corpus) and `make test` runs
# every CPU test (also under the sanitizers, with the loader fuzzer: make asan) and compiles every CUDA target.
#
# Conventions: header-only libraries live in llmc/ (data/ holds the headers only its programs use); every .c
# in tools/ (the product's evaluation and report programs), data/, dev/test/, dev/eval/ and dev/fuzz/ is one
# program, built as build/<name>; every .cu in dev/cuda/ is one program (numbered kernel versions with their
# own CPU check and timing).

CC ?= gcc
CFLAGS ?= -O2 -Wall -Wextra -Wno-unused-parameter -std=gnu11 -fopenmp
LDLIBS = -lm
BUILD = build

NVCC ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
GPU_ARCH ?= -gencode=arch=compute_90a,code=sm_90a
NVCC_FLAGS ?= -O3 -std=c++17 -I. $(GPU_ARCH) -lineinfo -Xcompiler -Wall,-Wno-unused-function
NVCC_LDLIBS = -lcublas -lcublasLt
# PRECISION=FP32 builds the CUDA programs with fp32 activations and weights (debugging), as llm.c.
ifeq ($(PRECISION),FP32)
  NVCC_FLAGS += -DENABLE_FP32
endif

CPU_TESTS = $(patsubst dev/test/%.c,$(BUILD)/%,$(wildcard dev/test/*.c))
DATA_TOOLS = $(patsubst data/%.c,$(BUILD)/%,$(wildcard data/*.c))
TOOLS = $(patsubst tools/%.c,$(BUILD)/%,$(wildcard tools/*.c))
EVAL_DEV = $(patsubst dev/eval/%.c,$(BUILD)/%,$(wildcard dev/eval/*.c))
CUDA_DEV = $(patsubst dev/cuda/%.cu,$(BUILD)/cuda/%,$(wildcard dev/cuda/*.cu))
HEADERS = $(wildcard llmc/*.h llmc/tables/*.h llmc/eval/*.h llmc/eval/tables/*.h data/*.h dev/test/*.h)
CUDA_HEADERS = $(HEADERS) $(wildcard llmc/*.cuh llmc/eval/*.cuh)

.PHONY: all cpu cuda run test asan clean

all: cpu

cpu: train_gpt_moba $(TOOLS) $(CPU_TESTS) $(DATA_TOOLS) $(EVAL_DEV)

train_gpt_moba: train_gpt_moba.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

$(BUILD)/%: dev/test/%.c $(HEADERS) train_gpt_moba.c | $(BUILD)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

$(BUILD)/%: tools/%.c $(HEADERS) train_gpt_moba.c | $(BUILD)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

$(BUILD)/%: dev/eval/%.c $(HEADERS) | $(BUILD)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

$(BUILD)/%: data/%.c $(HEADERS) | $(BUILD)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LDLIBS) -lpthread

$(BUILD)/%: dev/fuzz/%.c $(HEADERS) train_gpt_moba.c | $(BUILD)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

$(BUILD):
	mkdir -p $(BUILD) $(BUILD)/cuda

# ---- sanitizers: the CPU tests and the loader fuzzer (dev/fuzz/) built with AddressSanitizer +
# UndefinedBehaviorSanitizer into build-asan/, then run by dev/test/run_sanitized.sh (fails on any report).
ASAN_BUILD = build-asan
ASAN_CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
ASAN_PROGRAMS = $(notdir $(CPU_TESTS)) fuzz_loaders

asan: $(BUILD)/prepare  # test_tokenizer runs build/prepare (the plain build)
	$(MAKE) -j2 BUILD=$(ASAN_BUILD) CFLAGS="$(CFLAGS) $(ASAN_CFLAGS)" $(addprefix $(ASAN_BUILD)/,$(ASAN_PROGRAMS))
	bash dev/test/run_sanitized.sh $(ASAN_BUILD)

# ---- CUDA (compiles without a GPU; runs on one) ----
# Multi-GPU (llmc/multi_gpu.cuh), as llm.c: NCCL when nccl.h is found (-DMULTI_GPU -lnccl; NO_MULTI_GPU=1
# turns it off and leaves a world-size-1 build), and with it OpenMPI when mpicc or Debian's openmpi
# headers are found (-DUSE_MPI -lmpi; NO_USE_MPI=1 turns it off: launch through the fs/tcp rendezvous).
# --as-needed keeps NCCL and MPI out of the programs that do not call them.
NCCL_HEADER := $(firstword $(wildcard /usr/include/nccl.h /usr/local/cuda/include/nccl.h))
ifeq ($(NO_MULTI_GPU),1)
  NCCL_HEADER :=
endif
ifneq ($(NCCL_HEADER),)
  NVCC_FLAGS += -DMULTI_GPU
  NVCC_LDLIBS += -Xlinker --as-needed -lnccl
  ifneq ($(NO_USE_MPI),1)
    MPI_INCDIRS := $(shell mpicc --showme:incdirs 2>/dev/null)
    MPI_LIBDIRS := $(shell mpicc --showme:libdirs 2>/dev/null)
    ifeq ($(MPI_INCDIRS),)
      ifneq ($(wildcard /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h),)
        MPI_INCDIRS := /usr/lib/x86_64-linux-gnu/openmpi/include
        MPI_LIBDIRS := /usr/lib/x86_64-linux-gnu/openmpi/lib
      endif
    endif
    ifneq ($(MPI_INCDIRS),)
      NVCC_FLAGS += -DUSE_MPI $(addprefix -I,$(MPI_INCDIRS))
      NVCC_LDLIBS += $(addprefix -L,$(MPI_LIBDIRS)) -lmpi
    endif
  endif
endif

cuda: train_gpt_moba_cu test_gpt_moba_cu $(if $(wildcard eval_gpt_moba.cu),eval_gpt_moba_cu) $(CUDA_DEV)

train_gpt_moba_cu: train_gpt_moba.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LDLIBS)

test_gpt_moba_cu: test_gpt_moba.cu train_gpt_moba.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LDLIBS)

eval_gpt_moba_cu: eval_gpt_moba.cu train_gpt_moba.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LDLIBS)

$(BUILD)/cuda/%: dev/cuda/%.cu $(CUDA_HEADERS) | $(BUILD)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LDLIBS)

# ---- the two README commands ----
run:
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(MAKE) train_gpt_moba_cu && ./train_gpt_moba_cu; \
	else \
	  $(MAKE) train_gpt_moba && ./train_gpt_moba; \
	fi

test: cpu
	bash dev/test/run_tests.sh
	$(MAKE) asan
	$(MAKE) -j2 cuda
	@echo "all CUDA targets compiled"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) train_gpt_moba train_gpt_moba_cu test_gpt_moba_cu eval_gpt_moba_cu
