# dsinfer: the one build entry point.
#   make            build bin/dsinfer and build/libdsinfer.a
#   make run        install missing packages, build, generate text with the default model
#   make test       install missing packages, build, run every test (summary at the end)
#   make check      the tests again under ASan+UBSan, every CPU-feature mask, and the fuzzers
#   make bench      benchmarks (tokenizer, kernels, model); see docs/PERFORMANCE.md
#   make fuzz       libFuzzer targets (clang) in build-fuzz/
#   make test-arm   the AArch64 kernel tests, cross-built in build-arm/, under qemu-aarch64
#                   (make test runs them too when aarch64-linux-gnu-gcc and qemu-aarch64 exist)
# Knobs: DEBUG=1 SANITIZE=1 TSAN=1 (ThreadSanitizer) NATIVE=1 WERROR=1 VKPROF=1 (GPU time per shader on stderr), and
# CC, CFLAGS, BUILD.

CC      ?= cc
BUILD   ?= build
CFLAGS  ?= -O2 -g
DEPS    := libpcre2-8 libutf8proc libcjson libmicrohttpd stb

PKG_CFLAGS := $(shell pkg-config --cflags $(DEPS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(DEPS) 2>/dev/null)
# OpenBLAS for large float GEMMs (prompt processing); BLAS=0 builds without it.
BLAS ?= 1
ifeq ($(BLAS),1)
ifneq ($(shell pkg-config --exists openblas 2>/dev/null && echo yes),)
PKG_CFLAGS += $(shell pkg-config --cflags openblas) -DDSI_HAVE_BLAS
PKG_LIBS   += $(shell pkg-config --libs openblas)
endif
endif

override CFLAGS += -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -D_GNU_SOURCE \
                   -fopenmp -I. $(PKG_CFLAGS) -MMD -MP
LDLIBS  := $(PKG_LIBS) -fopenmp -lm -lpthread -ldl

ifdef DEBUG
override CFLAGS += -O0 -DDSI_DEBUG
endif
ifdef SANITIZE
override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif
ifdef TSAN
override CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif
ifdef NATIVE
override CFLAGS += -march=native
endif
ifdef VKPROF
override CFLAGS += -DDSI_VK_PROFILE
endif
ifdef WERROR
override CFLAGS += -Werror
endif
ifdef FUZZ
override CFLAGS += -fsanitize=fuzzer-no-link
endif

# ---- sources --------------------------------------------------------------------------------
ARCH      := $(shell $(CC) -dumpmachine 2>/dev/null)
LIB_SRC   := $(wildcard core/*.c quant/*.c src/*.c src/models/*.c src/server/*.c src/vision/*.c vulkan/*.c)
ifneq ($(findstring x86_64,$(ARCH)),)
LIB_SRC   += $(wildcard quant/x86/*.c)
endif
ifneq ($(findstring aarch64,$(ARCH)),)
LIB_SRC   += $(wildcard quant/arm/*.c)
endif
CLI_SRC   := $(wildcard src/cli/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
TOOL_SRC  := $(wildcard tools/*.c)
TESTS     := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TOOLS     := $(patsubst tools/%.c,$(BUILD)/tools/%,$(TOOL_SRC))
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS   := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
LIB       := $(BUILD)/libdsinfer.a
BIN       := bin/dsinfer
ifneq ($(BUILD),build)
BIN       := $(BUILD)/bin/dsinfer
endif

# Test data: tests/fixtures holds small files as they are and large ones xz-compressed;
# both are mirrored, decompressed, into $(BUILD)/fixtures.
FIX_ALL   := $(shell find tests/fixtures -type f 2>/dev/null)
FIX_OUT   := $(patsubst tests/fixtures/%,$(BUILD)/fixtures/%,$(FIX_ALL:.xz=))

NEED_DEPS := $(filter-out clean deps run test check format test-arm arm-tests,$(or $(MAKECMDGOALS),all))
ifneq ($(NEED_DEPS),)
ifeq ($(shell pkg-config --exists vulkan && command -v $(or $(GLSLC),glslc)),)
$(error missing the Vulkan headers or glslc; install them with: apt-get install -y libvulkan-dev glslc \
  (or run tools/deps.sh))
endif
ifeq ($(PKG_LIBS),)
$(error missing libraries ($(DEPS)); install them with: apt-get install -y pkg-config \
libpcre2-dev libutf8proc-dev libcjson-dev libmicrohttpd-dev libstb-dev libvulkan-dev glslc  (or run tools/deps.sh))
endif
endif

.PHONY: all deps run test check bench fuzz format clean tests tools fixtures fuzzers test-arm arm-tests
all: $(BIN) $(LIB) tools

# ISA flags per file: only the kernels reached through the dispatch table get them.
$(BUILD)/quant/x86/%_avx2.o: override CFLAGS += -mavx2 -mfma -mf16c
$(BUILD)/quant/x86/%_avx512.o: override CFLAGS += -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mf16c
$(BUILD)/quant/x86/%_vnni.o: override CFLAGS += -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni -mfma -mf16c
$(BUILD)/quant/x86/%_avx2vnni.o: override CFLAGS += -mavx2 -mfma -mf16c -mavxvnni
$(BUILD)/quant/arm/%_dotprod.o: override CFLAGS += -march=armv8.2-a+dotprod
$(BUILD)/quant/arm/%_i8mm.o: override CFLAGS += -march=armv8.6-a+dotprod+i8mm
ifneq ($(findstring aarch64,$(ARCH)),)
# GCC 12.2 (Debian 12) for AArch64 crashes in vect_transform_reduction on test_ops.c's
# `worst = fmax(worst, fabs(o1[i] - o2[i]))` loop (constant trip count) at -O2
$(BUILD)/tests/test_ops.o: override CFLAGS += -fno-tree-vectorize
endif

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

# ---- Vulkan shaders: GLSL -> SPIR-V by glslc (with a depfile), embedded by vulkan/pipeline.c ----
# Each variant: its source (default: the variant's name) and defines.
VK_WTYPES  := f32 f16 q4_0 q8_0 q4_k q5_k q6_k
VK_SHADERS := $(foreach t,$(VK_WTYPES),matvec_$(t) matvec_sg_$(t) matmul_$(t)) \
              rmsnorm layernorm rope kv_store_f16 kv_store_f32 attention_f16 attention_f32 attn_combine eltwise \
              gather attention_mla_f16 attention_mla_f32 copy moe_combine route
# a weight type's WTYPE (vulkan/shaders/common.glsl) is its position in VK_WTYPES, from 0
$(foreach t,$(VK_WTYPES),$(eval wt_$(t) := $(shell echo $(VK_WTYPES) | tr ' ' '\n' | grep -nx $(t) | cut -d: -f1)))
$(foreach t,$(VK_WTYPES),$(eval src_matvec_$(t) := matvec)$(eval src_matvec_sg_$(t) := matvec) \
  $(eval src_matmul_$(t) := matmul)$(eval def_matvec_$(t) := -DWTYPE=$$$$(($(wt_$(t)) - 1))) \
  $(eval def_matvec_sg_$(t) := -DWTYPE=$$$$(($(wt_$(t)) - 1)) -DSUBGROUP=1) \
  $(eval def_matmul_$(t) := -DWTYPE=$$$$(($(wt_$(t)) - 1))))
src_layernorm := rmsnorm
def_layernorm := -DLAYERNORM=1
src_kv_store_f16 := kv_store
src_kv_store_f32 := kv_store
def_kv_store_f16 := -DKV_F16=1
def_kv_store_f32 := -DKV_F16=0
src_attention_f16 := attention
src_attention_f32 := attention
def_attention_f16 := -DKV_F16=1
def_attention_f32 := -DKV_F16=0
src_attention_mla_f16 := attention
src_attention_mla_f32 := attention
def_attention_mla_f16 := -DKV_F16=1 -DSHARED_V=1 -DMAXD=576
def_attention_mla_f32 := -DKV_F16=0 -DSHARED_V=1 -DMAXD=576
GLSLC   ?= glslc
VK_SPV  := $(VK_SHADERS:%=$(BUILD)/spv/%.inc)
.SECONDEXPANSION:
$(BUILD)/spv/%.inc: vulkan/shaders/$$(or $$(src_$$*),$$*).comp
	@mkdir -p $(@D)
	$(GLSLC) --target-env=vulkan1.2 -O $(def_$*) -MD -MF $@.d -mfmt=c $< -o $@
$(BUILD)/vulkan/pipeline.o: $(VK_SPV)
$(BUILD)/vulkan/pipeline.o: override CFLAGS += -I$(BUILD)

$(LIB): $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRC)) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/tests/util.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tools/%: $(BUILD)/tools/%.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $^ $(LDLIBS) -o $@

$(BUILD)/fixtures/%: tests/fixtures/%.xz
	@mkdir -p $(@D)
	xz -dc $< > $@.part && mv $@.part $@

$(BUILD)/fixtures/%: tests/fixtures/%
	@mkdir -p $(@D)
	cp $< $@

tests: $(TESTS) $(BIN)
tools: $(TOOLS)
fuzzers: $(FUZZERS)
fixtures: $(FIX_OUT)

deps:
	@sh tools/deps.sh build

DEFAULT_MODEL := models/shakespeare-qwen2.gguf

run:
	@sh tools/deps.sh build
	@$(MAKE) --no-print-directory $(BIN)
	$(BIN) run -m $(DEFAULT_MODEL) -p 'ROMEO:' -n 128 --seed 42

test:
	@sh tools/deps.sh test
	@$(MAKE) --no-print-directory tests fixtures tools
	@arm=; if $(ARM_FOUND); then $(MAKE) --no-print-directory $(ARM_MAKE) arm-tests || exit 1; \
	  arm=$(ARM_BUILD); else echo "note: no $(ARM_CC) or qemu-aarch64, AArch64 kernel tests skipped"; fi; \
	  DSI_ARM_BUILD=$$arm DSI_ARM_RUN="$(ARM_RUN)" sh tests/run.sh $(BUILD) $(BIN)

# ---- AArch64 kernels: cross-built and run under qemu's user-mode emulation -----------------
# Only what the kernel tests need (core/ without the cJSON reader, quant/, src/ops.c, BLAS=0),
# linked statically so qemu needs no AArch64 libraries; every test runs once per ISA variant
# (tests/run.sh): all of qemu's "max" CPU (dotprod, i8mm), then i8mm and dotprod masked.
ARM_CC    ?= aarch64-linux-gnu-gcc
ARM_RUN   ?= qemu-aarch64 -cpu max
ARM_BUILD := build-arm
ARM_SRC   := $(filter-out core/safetensors.c,$(wildcard core/*.c)) $(wildcard quant/*.c quant/arm/*.c) \
             src/ops.c
ARM_TESTS := test_qdot test_quant test_ops
ARM_FOUND := command -v $(ARM_CC) >/dev/null 2>&1 && command -v $(firstword $(ARM_RUN)) >/dev/null 2>&1
ARM_MAKE  := CC=$(ARM_CC) BUILD=$(ARM_BUILD) BLAS=0 PKG_CFLAGS= PKG_LIBS= LIB_SRC="$(ARM_SRC)" \
             LDFLAGS=-static NATIVE= SANITIZE= FUZZ=

test-arm:
	@$(ARM_FOUND) || { echo "test-arm: needs $(ARM_CC) and $(firstword $(ARM_RUN)):" \
	  "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"; exit 1; }
	@$(MAKE) --no-print-directory $(ARM_MAKE) arm-tests
	@DSI_ARM_BUILD=$(ARM_BUILD) DSI_ARM_RUN="$(ARM_RUN)" DSI_ARM_ONLY=1 sh tests/run.sh $(ARM_BUILD)

# (run by the two above with BUILD=$(ARM_BUILD)) the test programs and the fixtures they read
arm-tests: $(ARM_TESTS:%=$(BUILD)/tests/%) \
           $(filter $(BUILD)/fixtures/quant/%.blocks $(BUILD)/fixtures/quant/%.ggml-f32,$(FIX_OUT))

check:
	@sh tools/deps.sh check
	@sh tests/check.sh

bench: $(BIN) tools fixtures
	@sh tools/bench.sh $(BUILD) $(BIN)

FUZZ_SECONDS ?= 60
fuzz:
	@$(MAKE) --no-print-directory CC=clang BUILD=build-fuzz SANITIZE=1 FUZZ=1 fuzzers
	@sh tests/fuzz.sh build-fuzz $(FUZZ_SECONDS)

format:
	clang-format -i $(LIB_SRC) $(CLI_SRC) $(TEST_SRC) $(TOOL_SRC) $(wildcard */*.h */*/*.h)

clean:
	rm -rf build build-* bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
