// The encoder stage of a build: runs model packages over the partitions of
// their modality, with a reader thread feeding a bounded queue and per-
// partition checkpoints that --resume picks up. Private to mmu_core.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmu/mmu_files.h"
#include "mmu/model_package.h"
#include "mmu/progress.h"

namespace mmu {

struct ModelStageOptions {
  int64_t batch_size = 0;   // 0 = automatic: the first batches try 8, 16, 32, 64 and the fastest per object wins
  int threads = 0;          // LibTorch intra-op threads; 0 = its default
  std::string resume_dir;   // per-partition checkpoints live here
  bool progress = true;
};

// One partition to encode: a file and its store order (store position -> file row).
struct ModelPartition {
  SourceFile file;
  Modality modality = Modality::kNone;
  std::vector<int64_t> order;
  std::vector<std::string> ids;  // by file row, for error messages
  int64_t spectrum_length = 0;    // pixels per spectrum (0 for other modalities)
};

// Encodes every partition of the card's modality; returns count x output_dim
// vectors in partition order and store order inside each, and the partition
// indices used. Checkpoints each finished partition under resume_dir and
// reuses checkpoints whose key (file, size, mtime, model hash, batch size) matches.
std::vector<float> run_model_stage(const ModelCard& card, ModelEncoder& encoder,
                                   const std::vector<ModelPartition>& parts, const ModelStageOptions& opt,
                                   std::vector<size_t>* used, int64_t* resumed, int64_t* batch_used = nullptr);

}  // namespace mmu
