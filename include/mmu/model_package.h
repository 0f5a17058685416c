// Model packages: a TorchScript file plus a JSON model card that pins it by
// SHA-256 and names its input, preprocessing and output.
//
//   <dir>/model.json   {"format": "mmu-model/1", "name", "version", "modality": "image"|"spectrum",
//                       "file": "model.pt", "sha256", "input": {"shape": [...]},
//                       "preprocessing": {"name": "astroclip-image"|"specformer-spectrum"|"aion-image",
//                                         "params": {...}},
//                       "output": {"dim": N, "l2_normalized": bool}, "license", "citation",
//                       "shared_space": {"id", "partner"}}   (optional: towers trained into one space)
//   <dir>/model.pt     TorchScript: forward(Tensor[B, *input.shape]) -> Tensor[B, dim]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mmu/model_transforms.h"

namespace mmu {

struct ModelCard {
  std::string dir, name, version, modality, file, sha256, license, citation;
  std::string transform;               // preprocessing name
  std::vector<int64_t> input_shape;    // per object, without the batch axis
  int64_t output_dim = 0;
  bool l2_normalized = false;          // else we normalise, as cosine search needs
  // Towers trained together (mmu-index train) share this id: their spaces may
  // be searched across (an image's vector among spectra). "" for other models.
  std::string shared_space;
  AstroclipImageParams astroclip;
  SpecformerParams specformer;
  AionImageParams aion;

  // The store space of this model: name@version, so two versions never share one.
  std::string space_name() const { return name + "@" + version; }
  int64_t input_size() const {         // product of input_shape
    int64_t n = 1;
    for (int64_t v : input_shape) n *= v;
    return n;
  }
};

// Reads and validates <dir>/model.json and checks the file's SHA-256. Throws
// mmu::Error naming the package and the field at fault; reads no weights.
ModelCard load_model_card(const std::string& dir);

// A loaded TorchScript model on the CPU (or CUDA when built with it). Up to
// workers() threads may call encode at once, each with its own batch.
class ModelEncoder {
 public:
  // Loads the module and runs one probe object through it, so a package whose
  // input shape or output dimension disagrees with its card is refused here.
  // LibTorch lives in a plug-in (libmmu_models.so, beside the executable or
  // named by $MMU_MODELS_LIB) loaded on first use: commands that run no model
  // start without LibTorch's ~0.7 s of loading.
  // device: "cpu", or "cuda" in a build configured with -DMMU_ENABLE_CUDA=ON.
  static std::unique_ptr<ModelEncoder> load(const ModelCard& card, int threads, const std::string& device = "cpu");
  virtual ~ModelEncoder() = default;
  // inputs: n x card.input_size() floats; out: n x card.output_dim, L2-normalised.
  virtual void encode(const float* inputs, int64_t n, float* out) = 0;
  // How many batches are best run side by side, each on its own thread (the
  // cores are split between them).
  virtual int workers() const { return 1; }
  // Objects per model call when batches run side by side (0: the whole
  // batch). The stage hands out work in pieces of this size, so that no
  // worker is left with a long last batch while the others idle.
  virtual int64_t call_size() const { return 0; }
};

// Whether data of this shape fits the model's fixed input: spectra must give
// the card's token count (SDSS lengths do not fit a DESI SpecFormer).
inline bool model_accepts(const ModelCard& card, int64_t spectrum_length) {
  return card.transform != "specformer-spectrum" ||
         specformer_tokens(spectrum_length, card.specformer) == card.input_shape[0];
}

// Runs the card's named transform on a batch (the batch's modality must match).
// out is resized to batch count x card.input_size(); throws FormatError when
// the data cannot give the card's input shape.
void prepare_model_inputs(const ModelCard& card, const ImageBatch* images, const SpectrumBatch* spectra,
                          std::vector<float>* out);

}  // namespace mmu
