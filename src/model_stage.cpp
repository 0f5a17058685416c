#include "model_stage.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <thread>

#include "file_util.h"
#include "mmu/bounded_queue.h"
#include "mmu/error.h"
#include "sha256.h"

namespace fs = std::filesystem;

namespace mmu {

namespace {

// Automatic batch size: time one batch of each candidate (after a warm-up
// batch), then keep the fastest per object. Large batches can be slower on a
// CPU because their activations fall out of cache.
class BatchSizer {
 public:
  explicit BatchSizer(int64_t fixed) : fixed_(fixed) {}
  int64_t next() const { return fixed_ > 0 ? fixed_ : (chosen_ > 0 ? chosen_ : kCandidates[std::min(step_, kLast)]); }
  // Reports the time a batch of `count` took (the size the producer used).
  void observe(int64_t count, double seconds) {
    if (fixed_ > 0 || chosen_ > 0) return;
    if (warmed_up_ && count == kCandidates[step_]) {
      const double per_object = seconds / static_cast<double>(count);
      if (best_ < 0 || per_object < best_per_object_) {
        best_ = kCandidates[step_];
        best_per_object_ = per_object;
      }
      if (++step_ > kLast) chosen_ = best_;
    }
    warmed_up_ = true;
  }
  int64_t chosen() const { return fixed_ > 0 ? fixed_ : chosen_; }

 private:
  static constexpr int64_t kCandidates[4] = {8, 16, 32, 64};
  static constexpr size_t kLast = 3;
  int64_t fixed_;
  size_t step_ = 0;
  bool warmed_up_ = false;
  int64_t best_ = -1, chosen_ = -1;
  double best_per_object_ = 0;
};

struct Batch {
  int64_t start = 0, count = 0;
  std::vector<float> inputs;
};

std::string checkpoint_path(const ModelCard& card, const ModelPartition& p, const ModelStageOptions& opt) {
  const std::string key = sha256_hex(fs::absolute(p.file.path).lexically_normal().string() + "\n" +
                                     std::to_string(p.file.size) + "\n" + std::to_string(p.file.mtime) + "\n" +
                                     card.sha256 + "\n" + std::to_string(opt.batch_size));
  return (fs::path(opt.resume_dir) / card.space_name() / (key + ".f32")).string();
}

// Reads and preprocesses batches on this thread while the caller runs the model.
void produce(const ModelCard& card, const ModelPartition& p, std::atomic<int64_t>* batch_size,
             BoundedQueue<Batch>* queue, std::exception_ptr* error) {
  try {
    RowFileReader reader(p.file);
    const int64_t n = reader.rows();
    ImageBatch images;
    SpectrumBatch spectra;
    for (int64_t start = 0; start < n;) {
      Batch b;
      b.start = start;
      b.count = std::min(batch_size->load(), n - start);
      if (card.modality == "image") {
        reader.read_images(b.start, b.count, &images);
        prepare_model_inputs(card, &images, nullptr, &b.inputs);
      } else {
        reader.read_spectra(b.start, b.count, &spectra);
        prepare_model_inputs(card, nullptr, &spectra, &b.inputs);
      }
      start += b.count;
      if (!queue->push(std::move(b))) break;
    }
  } catch (const Error& e) {
    *error = std::make_exception_ptr(FormatError("'" + p.file.path + "' for model '" + card.name + "': " + e.what()));
  } catch (...) {
    *error = std::current_exception();
  }
  queue->close();
}

std::vector<float> encode_partition(const ModelCard& card, ModelEncoder& encoder, const ModelPartition& p,
                                    BatchSizer* sizer, Progress* progress) {
  const int64_t n = static_cast<int64_t>(p.order.size()), d = card.output_dim;
  std::vector<float> by_file_row(static_cast<size_t>(n * d));
  BoundedQueue<Batch> queue(2);  // one batch in the model, one being read: bounded memory
  std::exception_ptr error;
  std::atomic<int64_t> batch_size{sizer->next()};
  std::thread reader(produce, std::cref(card), std::cref(p), &batch_size, &queue, &error);
  try {
    while (auto b = queue.pop()) {
      const auto t0 = std::chrono::steady_clock::now();
      encoder.encode(b->inputs.data(), b->count, by_file_row.data() + b->start * d);
      sizer->observe(b->count, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      batch_size = sizer->next();
      progress->add(b->count);
    }
  } catch (...) {
    queue.close();
    while (queue.pop()) {
    }
    reader.join();
    throw;
  }
  reader.join();
  if (error) std::rethrow_exception(error);
  std::vector<float> out(by_file_row.size());
  for (int64_t pos = 0; pos < n; ++pos)
    std::copy_n(by_file_row.data() + p.order[pos] * d, d, out.data() + pos * d);
  return out;
}

}  // namespace

std::vector<float> run_model_stage(const ModelCard& card, ModelEncoder& encoder,
                                   const std::vector<ModelPartition>& parts, const ModelStageOptions& opt,
                                   std::vector<size_t>* used, int64_t* resumed, int64_t* batch_used) {
  const Modality m = card.modality == "image" ? Modality::kImage : Modality::kSpectrum;
  int64_t total = 0;
  for (const auto& p : parts)
    if (p.modality == m && model_accepts(card, p.spectrum_length)) total += static_cast<int64_t>(p.order.size());
  Progress progress("encoding with " + card.space_name(), total, opt.progress);
  std::vector<float> all;
  *resumed = 0;
  BatchSizer sizer(opt.batch_size);
  for (size_t i = 0; i < parts.size(); ++i) {
    const ModelPartition& p = parts[i];
    if (p.modality != m) continue;
    if (!model_accepts(card, p.spectrum_length)) continue;  // reported by the build
    used->push_back(i);
    const std::string ckpt = checkpoint_path(card, p, opt);
    const size_t bytes = p.order.size() * static_cast<size_t>(card.output_dim) * sizeof(float);
    std::error_code ec;
    if (fs::is_regular_file(ckpt, ec) && fs::file_size(ckpt, ec) == bytes) {
      const std::string data = files::read_all(ckpt);
      const float* f = reinterpret_cast<const float*>(data.data());
      all.insert(all.end(), f, f + data.size() / sizeof(float));
      *resumed += static_cast<int64_t>(p.order.size());
      progress.add(static_cast<int64_t>(p.order.size()));
      continue;
    }
    const std::vector<float> v = encode_partition(card, encoder, p, &sizer, &progress);
    files::make_dirs(fs::path(ckpt).parent_path().string());
    files::write_atomic(ckpt, v.data(), v.size() * sizeof(float));  // the partition is now committed
    all.insert(all.end(), v.begin(), v.end());
  }
  progress.finish();
  if (batch_used) *batch_used = sizer.chosen() > 0 ? sizer.chosen() : sizer.next();
  return all;
}

}  // namespace mmu
