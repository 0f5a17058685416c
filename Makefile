# The two commands a new user runs: `make demo` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
PY := /usr/bin/python3
DEMO_DATA := $(BUILD)/demo-data
DEMO_STORE := $(BUILD)/demo-store
DEMO_MODEL := $(BUILD)/demo-model
DEMO_ID ?= $(shell $(PY) tools/demo_query_id.py $(DEMO_DATA)/truth.csv 2>/dev/null)

.PHONY: all deps build demo test bench clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(DEMO_DATA)/truth.csv: tools/make_samples.py | deps
	@echo "== generating the demo set (3000 galaxies, seed 7) in $(DEMO_DATA)"
	rm -rf $(DEMO_DATA)
	$(PY) tools/make_samples.py --out $(DEMO_DATA) --n 3000 --seed 7

demo: build $(DEMO_DATA)/truth.csv
	@echo "== building a store from data/samples/ and $(DEMO_DATA)"
	$(BUILD)/mmu-index build data/samples $(DEMO_DATA) --store $(DEMO_STORE)
	@echo "== mmu-search --like $(DEMO_ID) --k 50"
	$(BUILD)/mmu-search --store $(DEMO_STORE) --like $(DEMO_ID) --k 50
	@echo "== training a small image-spectrum model on the cross-matched pairs (8 epochs, about a minute on 2 cores)"
	$(BUILD)/mmu-index xmatch --store $(DEMO_STORE) --left legacysurvey --right desi --link | tail -1
	rm -rf $(DEMO_MODEL)
	$(BUILD)/mmu-index train --store $(DEMO_STORE) --out $(DEMO_MODEL) --epochs 8 --patience 8 --seed 1
	$(BUILD)/mmu-index build data/samples $(DEMO_DATA) --store $(DEMO_STORE) --model $(DEMO_MODEL)/image --model $(DEMO_MODEL)/spectrum --quiet
	@echo "== the trained image tower: images like $(DEMO_ID)"
	$(BUILD)/mmu-search --store $(DEMO_STORE) --like $(DEMO_ID) --space mmu-clip-image --k 5
	@echo "== across modalities: spectra that match the image of $(DEMO_ID)"
	$(BUILD)/mmu-search --store $(DEMO_STORE) --like $(DEMO_ID) --from image --to spectrum --k 5
	@echo "== see them: $(BUILD)/mmu-search serve --store $(DEMO_STORE), then open http://127.0.0.1:8765/?like=$(DEMO_ID)&k=50"

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	$(PY) bench/run_benchmarks.py --build $(BUILD)

clean:
	rm -rf $(BUILD)
