#include "ingest/model_stage.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include <omp.h>

#include "base/file_util.h"
#include "base/finite.h"
#include "mmu/bounded_queue.h"
#include "mmu/error.h"
#include "base/sha256.h"

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
  size_t job = 0;  // index into the stage's jobs
  int64_t start = 0, count = 0;
  std::vector<float> inputs;
};

// A partition being encoded: its vectors by file row fill in as its batches
// finish, on whichever worker; the last one checkpoints it.
struct Job {
  const ModelPartition* part = nullptr;
  std::string checkpoint;
  bool pending = false;        // false: its checkpoint was reused
  std::vector<float> by_file_row;
  int64_t left = 0;            // objects not yet encoded (under Shared::mu)
  std::vector<float> vectors;  // store order, once done
};

// What the workers share; sizer, progress and error are under mu.
struct Shared {
  std::mutex mu;
  BatchSizer* sizer;
  Progress* progress;
  std::atomic<int64_t> batch_size;
  std::exception_ptr error;  // the first worker failure
  std::atomic<bool> failed{false};
};

std::string checkpoint_path(const ModelCard& card, const ModelPartition& p, const ModelStageOptions& opt) {
  const std::string key = sha256_hex(fs::absolute(p.file.path).lexically_normal().string() + "\n" +
                                     std::to_string(p.file.size) + "\n" + std::to_string(p.file.mtime) + "\n" +
                                     card.sha256 + "\n" + std::to_string(opt.batch_size));
  return (fs::path(opt.resume_dir) / card.space_name() / (key + ".f32")).string();
}

// Reads and preprocesses every job's batches, in order, while the workers run
// the model. Batches never span partitions, so each partition's vectors do not
// depend on its neighbours or on which worker ran them. With call_size > 0
// each batch is queued in pieces of that many objects, the model calls the
// encoder would make of it anyway (same objects together, same vectors).
void produce(const ModelCard& card, std::vector<Job>* jobs, std::atomic<int64_t>* batch_size, int64_t call_size,
             BoundedQueue<Batch>* queue, std::exception_ptr* error) {
  // The model's workers already keep every core busy: an OpenMP team here
  // would only take cores from them (libgomp's idle threads spin).
  omp_set_num_threads(1);
  size_t j = 0;
  try {
    ImageBatch images;
    SpectrumBatch spectra;
    for (; j < jobs->size(); ++j) {
      if (!(*jobs)[j].pending) continue;
      MmuFileReader reader((*jobs)[j].part->file);
      const int64_t n = reader.rows();
      for (int64_t start = 0; start < n;) {
        Batch b;
        b.job = j;
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
        const int64_t piece = call_size > 0 ? call_size : b.count, width = card.input_size();
        for (int64_t s = 0; s < b.count; s += piece) {
          Batch part;
          part.job = b.job;
          part.start = b.start + s;
          part.count = std::min(piece, b.count - s);
          if (part.count == b.count) {
            part.inputs = std::move(b.inputs);
          } else {
            part.inputs.assign(b.inputs.begin() + s * width, b.inputs.begin() + (s + part.count) * width);
          }
          if (!queue->push(std::move(part))) {
            queue->close();
            return;
          }
        }
      }
    }
  } catch (const Error& e) {
    *error = std::make_exception_ptr(
        FormatError("'" + (*jobs)[j].part->file.path + "' for model '" + card.name + "': " + e.what()));
  } catch (...) {
    *error = std::current_exception();
  }
  queue->close();
}

// Puts a finished partition in store order and commits its checkpoint.
void finish_job(const ModelCard& card, Job* job) {
  const int64_t d = card.output_dim, n = static_cast<int64_t>(job->part->order.size());
  job->vectors.resize(job->by_file_row.size());
  for (int64_t pos = 0; pos < n; ++pos)
    std::copy_n(job->by_file_row.data() + job->part->order[pos] * d, d, job->vectors.data() + pos * d);
  std::vector<float>().swap(job->by_file_row);
  // A model can emit NaN (e.g. on an extreme pixel): it is refused here, before the checkpoint.
  const int64_t bad = first_non_finite_row(job->vectors.data(), n, d);
  if (bad >= 0) {
    const int64_t row = job->part->order[bad];
    throw FormatError("model '" + card.space_name() + "' gave NaN or Inf for object '" +
                      job->part->ids.at(static_cast<size_t>(row)) + "' (row " + std::to_string(row) + ") in '" +
                      job->part->file.path + "'");
  }
  files::make_dirs(fs::path(job->checkpoint).parent_path().string());
  files::write_atomic(job->checkpoint, job->vectors.data(), job->vectors.size() * sizeof(float));
}

// One inference worker: takes batches until the queue is drained. Each batch
// writes its own rows, so the vectors do not depend on the order batches finish.
void work(const ModelCard& card, ModelEncoder* encoder, std::vector<Job>* jobs, BoundedQueue<Batch>* queue,
          Shared* shared) {
  while (auto b = queue->pop()) {
    if (shared->failed) continue;  // drain, so the reader is not left blocked
    Job& job = (*jobs)[b->job];
    try {
      const auto t0 = std::chrono::steady_clock::now();
      encoder->encode(b->inputs.data(), b->count, job.by_file_row.data() + b->start * card.output_dim);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      bool done;
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        shared->sizer->observe(b->count, seconds);
        shared->batch_size = shared->sizer->next();
        shared->progress->add(b->count);
        done = (job.left -= b->count) == 0;
      }
      if (done) finish_job(card, &job);  // no other worker touches a finished job
    } catch (...) {
      std::lock_guard<std::mutex> lock(shared->mu);
      if (!shared->failed) shared->error = std::current_exception();
      shared->failed = true;
      queue->close();
    }
  }
}

// Encodes the jobs with encoder.workers() workers fed by one reader thread.
void encode_jobs(const ModelCard& card, ModelEncoder& encoder, std::vector<Job>* jobs, BatchSizer* sizer,
                 Progress* progress) {
  if (std::none_of(jobs->begin(), jobs->end(), [](const Job& j) { return j.pending && j.left > 0; })) return;
  const int workers = std::max(1, encoder.workers());
  // A batch ready for each worker while the reader prepares the next: bounded memory.
  BoundedQueue<Batch> queue(static_cast<size_t>(workers));
  Shared shared;
  shared.sizer = sizer;
  shared.progress = progress;
  shared.batch_size = sizer->next();
  std::exception_ptr read_error;
  std::thread reader(produce, std::cref(card), jobs, &shared.batch_size, encoder.call_size(), &queue, &read_error);
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) pool.emplace_back(work, std::cref(card), &encoder, jobs, &queue, &shared);
  for (auto& t : pool) t.join();
  reader.join();
  if (shared.error) std::rethrow_exception(shared.error);
  if (read_error) std::rethrow_exception(read_error);
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
  *resumed = 0;
  // One job per used partition, in partition order; checkpointed ones come back done.
  std::vector<Job> jobs;
  for (size_t i = 0; i < parts.size(); ++i) {
    const ModelPartition& p = parts[i];
    if (p.modality != m) continue;
    if (!model_accepts(card, p.spectrum_length)) continue;  // reported by the build
    used->push_back(i);
    Job job;
    job.part = &p;
    job.checkpoint = checkpoint_path(card, p, opt);
    const size_t count = p.order.size() * static_cast<size_t>(card.output_dim);
    std::error_code ec;
    if (fs::is_regular_file(job.checkpoint, ec) && fs::file_size(job.checkpoint, ec) == count * sizeof(float)) {
      const std::string data = files::read_all(job.checkpoint);
      const float* f = reinterpret_cast<const float*>(data.data());
      job.vectors.assign(f, f + count);
    }
    if (!job.vectors.empty() && first_non_finite_row(job.vectors.data(), 1, static_cast<int64_t>(count)) >= 0) {
      job.vectors.clear();  // a damaged checkpoint is encoded again, not trusted
    } else if (!job.vectors.empty()) {
      *resumed += static_cast<int64_t>(p.order.size());
      progress.add(static_cast<int64_t>(p.order.size()));
    } else {
      job.pending = true;
      job.by_file_row.resize(count);
      job.left = static_cast<int64_t>(p.order.size());
    }
    jobs.push_back(std::move(job));
  }
  for (Job& job : jobs)
    if (job.pending && job.left == 0) finish_job(card, &job);  // a partition without objects
  // A model called in pieces of call_size objects gains nothing from timing
  // batch sizes: the batches then hold whole pieces (about 32 objects), so
  // every call is full-size and the pieces fall the same way in every run.
  const int64_t call = encoder.call_size();
  BatchSizer sizer(opt.batch_size > 0 ? opt.batch_size : call > 0 ? call * std::max<int64_t>(1, 32 / call) : 0);
  encode_jobs(card, encoder, &jobs, &sizer, &progress);
  progress.finish();
  std::vector<float> all;
  for (const Job& job : jobs) all.insert(all.end(), job.vectors.begin(), job.vectors.end());
  if (batch_used) *batch_used = sizer.chosen() > 0 ? sizer.chosen() : sizer.next();
  return all;
}

}  // namespace mmu
