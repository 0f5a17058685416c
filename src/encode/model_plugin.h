// The LibTorch plug-in (libmmu_models.so), opened on first use by
// model_loader.cpp: beside the executable, or named by $MMU_MODELS_LIB.
#pragma once

namespace mmu {

// The address of the plug-in's extern "C" entry point `name`; throws NotFound
// naming the places looked at when the plug-in or the symbol is missing.
void* model_plugin_symbol(const char* name);

}  // namespace mmu
