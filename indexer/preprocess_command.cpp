#include "preprocess_command.h"

#include <algorithm>
#include <vector>

#include "mmu/error.h"
#include "mmu/mmu_files.h"
#include "mmu/model_package.h"
#include "mmu/npy.h"

namespace mmu::cli {

CLI::App* add_preprocess_command(CLI::App& app, PreprocessFlags& f) {
  auto* pre = app.add_subcommand("preprocess", "write the exact model inputs of a file's objects to a .npy (what the model sees)");
  pre->add_option("file", f.file, "one MMU file")->required();
  pre->add_option("--model", f.model, "model package folder (its card names the transform)")->required();
  pre->add_option("--out", f.out, "output .npy: objects x input shape, in file row order")->required();
  pre->add_option("--limit", f.limit, "at most this many objects (from the first row)")->capture_default_str();
  return pre;
}

int run_preprocess(const PreprocessFlags& f) {
  if (f.limit <= 0) throw InvalidArgument("--limit must be >= 1");
  const ModelCard card = load_model_card(f.model);
  SourceFile file;
  file.path = f.file;
  MmuFileReader reader(file);
  const int64_t n = std::min(f.limit, reader.rows());
  std::vector<float> inputs;
  ImageBatch images;
  SpectrumBatch spectra;
  if (card.modality == "image" && reader.modality() == Modality::kImage) {
    reader.read_images(0, n, &images);
    prepare_model_inputs(card, &images, nullptr, &inputs);
  } else if (card.modality == "spectrum" && reader.modality() == Modality::kSpectrum) {
    reader.read_spectra(0, n, &spectra);
    prepare_model_inputs(card, nullptr, &spectra, &inputs);
  } else {
    throw InvalidArgument("'" + f.file + "' holds " + modality_name(reader.modality()) + " data, model '" + card.name +
                          "' takes " + card.modality);
  }
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), card.input_shape.begin(), card.input_shape.end());
  write_npy_f32(f.out, shape, inputs.data());
  return 0;
}

}  // namespace mmu::cli
