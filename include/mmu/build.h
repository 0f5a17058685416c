// `mmu-index build`: MMU files -> catalog + baseline embeddings + index, as a
// new store generation that replaces the old one only when complete.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "mmu/preprocess.h"

namespace mmu {

struct BuildOptions {
  std::vector<std::string> roots;  // folders or files of MMU data
  std::string store;               // store directory
  int64_t batch_size = 0;          // objects per batch; 0 = automatic (64 for the baseline, measured for models)
  int64_t dim = 64;                // baseline PCA output dimension per space
  bool progress = true;            // progress lines on a terminal stderr
  bool skip_bad = false;           // leave out files that fail (reported) instead of stopping
  std::vector<std::string> models; // model package folders: one extra space each
  int threads = 0;                 // LibTorch intra-op threads (0 = its default)
  std::string device = "cpu";      // where models run: cpu, or cuda (CUDA builds only)
  bool resume = false;             // reuse the finished partitions of an interrupted build
  bool refit = false;              // read every file and refit the baseline, instead of reusing unchanged files
  bool wait_for_lock = false;      // wait while another process writes the store, instead of failing
  // A space of at least this many vectors whose index is flat (or new) gets the
  // sq8 copy after the build: exact answers, bit for bit the fp32 scan's, from a
  // quarter of the bytes (a cold --like at 10^6 x 512: 141 -> 77 ms, BENCHMARKS).
  // Below it the scan is not what a query costs. 0 = never.
  int64_t sq8_from_rows = 262144;
  // Sharded builds (issue 18): project every baseline space with the fit
  // folder `mmu-index fit` wrote, instead of fitting one on this build's files,
  // and read only the files of some HEALPix cells: --shard "I/N" (cell c goes
  // to shard c mod N) or --cells "3,7,9-12". A selection without a fit is
  // refused when any file feeds a baseline space.
  std::string fit_dir;
  std::string shard;
  std::string cells;
  // Set (e.g. by a signal handler) to stop the build at the next safe point;
  // it then throws and leaves the previous store as it was, its unfinished
  // generation removed.
  const std::atomic<bool>* cancel = nullptr;
  ImageFeatureOptions image;
  SpectrumFeatureOptions spectrum;
  LightCurveFeatureOptions light_curve;
};

struct BuildReport {
  int64_t files = 0;
  int64_t files_read = 0;                    // new or changed files read and encoded
  int64_t reused_files = 0;                  // unchanged files whose objects and vectors were carried over
  int64_t reused_objects = 0;
  std::vector<std::string> removed_files;    // files of the previous store that are gone (their objects dropped)
  std::vector<std::string> reindexed;        // "space: index, recall" rebuilt after the vectors changed
  int64_t objects = 0;
  int64_t without_modality = 0;              // catalogued, not embedded
  std::vector<std::string> skipped;          // "path: reason" for files left out by skip_bad
  std::vector<std::string> kept_spaces;      // spaces carried over unchanged (hard-linked) from the previous store
  int64_t resumed_objects = 0;               // model embeddings taken from checkpoints
  std::vector<std::string> model_skips;      // files a model's fixed input cannot take (e.g. SDSS lengths)
  std::vector<std::string> warnings;         // assumptions about a file's data, each naming the file (light-curve padding)
  // Per survey and band set of the image files read: "hsc: bands hsc-g, ... -> space image
  // (not used: hsc-y); pixel scale 0.168"/px (file: image_scale)".
  std::vector<std::string> image_bands;
  std::map<std::string, int64_t> space_counts;
  std::map<std::string, int64_t> space_dims;
  std::map<std::string, double> model_seconds;    // encoding time per model space (reading overlapped, load excluded)
  std::map<std::string, int64_t> model_batch;     // batch size used (the automatic choice when not given)
  double seconds = 0;
};

// Builds the store; throws mmu::Error naming the file/dataset/object at fault,
// in which case the previous store is left untouched.
BuildReport build_store(const BuildOptions& opt);

// Human-readable summary of a report, one line per item. Leaves out
// r.warnings, which the caller prints to stderr whatever the verbosity.
void print_build_report(const BuildReport& r, const std::string& store, std::ostream& out);

}  // namespace mmu
