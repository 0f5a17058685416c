// mmu-search-mpi: the plain mmu-search query (--like, --like-file, filters,
// --format) over a set of stores spread across MPI ranks, answering what
// `mmu-search --store A --store B ...` answers:
//   mpirun -n 4 mmu-search-mpi --stores shards.txt --like-file ids.txt --format csv
// or, with --serve, the search API of `mmu-search serve` over the set on rank
// 0 (set_service.h). Every rank parses the same command line; rank 0 prints.
// rank_scanner.h says how the ranks share the work and what happens when one
// is lost.
#include <mpi.h>

#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli_common.h"
#include "http_service.h"
#include "mmu/result_format.h"
#include "mmu/store_set.h"
#include "mmu/version.h"
#include "query_command.h"
#include "rank_scanner.h"
#include "set_service.h"

namespace {

using namespace mmu;

struct Flags {
  cli::QueryFlags query;
  std::vector<CLI::Option*> query_options;  // what a --serve takes from each request instead
  std::vector<std::string> stores;
  std::string stores_file;
  mpi::RankOptions rank;
  bool serve = false;
  cli::HttpFlags http;
};

// --serve answers requests, each with its own query: a query flag would be silently unused.
void check_serve_flags(const Flags& f) {
  if (!f.serve) return;
  for (const CLI::Option* o : f.query_options)
    if (o->count() > 0 && o->get_name() != "--device")
      throw InvalidArgument("--serve takes each query and its options (k, space, filters, format) from its request: "
                            "drop " + o->get_name());
}

constexpr int kSetupTag = 30;  // and 31: its pieces (transport.h)

// Every rank's `mine` (a setup error, "" from a rank that is fine; the
// stores it opened), gathered on rank 0, at any size. Waits for ever, as the
// collective calls of the setup do: a rank that dies here, mpirun names.
std::vector<std::string> gather_text(const std::string& mine, int rank, int size, int64_t chunk) {
  if (rank != 0) {
    mpi::send_bytes(mine, 0, kSetupTag, chunk, "sending rank 0 its setup");
    return {};
  }
  std::vector<std::string> out = {mine};
  for (int r = 1; r < size; ++r)
    out.push_back(mpi::receive_bytes(r, kSetupTag, std::numeric_limits<int64_t>::max(), mpi::Patience{},
                                     "rank " + std::to_string(r), [] { return std::string(); }));
  return out;
}

// Rank 0's part: every store's catalog, the queries, the output. Returns the exit code.
int run_rank0(const StoreSet& set, Flags& f) {
  const OutputFormat fmt = parse_output_format(f.query.format);
  for (const std::string& w : set.warnings()) std::cerr << "warning: " << w << "\n";
  const LikeQuery& q = f.query.q;
  const SetScanner scan = mpi::rank0_scanner(set, q, f.rank);
  if (!f.query.like_file.empty()) {
    if (!q.like.empty() || q.near || !q.vector.empty())
      throw InvalidArgument("--like-file runs one query per line: do not combine it with --like, --near or --vector");
    const auto results = search_like_set_batch(set, q, cli::read_id_file(f.query.like_file, "--like-file"), scan);
    return write_like_batch(results, fmt, std::cout, std::cerr);
  }
  if (q.like.empty() && !q.near && q.vector.empty())
    throw InvalidArgument("nothing to do: give --like <object_id>, --near RA,DEC, --vector f.npy or --like-file ids.txt");
  const LikeResult r = search_like_set(set, q, scan);
  write_like_result(r, fmt, std::cout);
  if (!r.note.empty()) std::cerr << "note: " << r.note << "\n";
  return 0;
}

int run(int argc, char** argv, int rank, int size, int thread_level) {
  CLI::App app{"mmu-search-mpi: search a set of stores spread over MPI ranks (run it under mpirun)"};
  app.set_version_flag("--version", std::string("mmu-search-mpi ") + kVersion);
  Flags f;
  const size_t before = app.get_options().size();
  cli::add_query_flags(app, f.query);
  const std::vector<CLI::Option*> all = app.get_options();
  f.query_options.assign(all.begin() + static_cast<std::ptrdiff_t>(before), all.end());
  app.add_option("--store", f.stores, "a store of the set (repeatable; store i goes to rank i % ranks)");
  app.add_option("--stores", f.stores_file, "a file listing the stores of the set, one per line")
      ->excludes(app.get_option("--store"));
  app.add_option("--rank-timeout", f.rank.timeout_s,
                 "seconds rank 0 waits for a rank's part of one scan before the query fails naming it")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1e6));
  CLI::Option* serve = app.add_flag(
      "--serve", f.serve,
      "answer the search API of `mmu-search serve` over HTTP on rank 0 (GET /health, /spaces, /like; POST /query, "
      "/batch; not the gallery) until SIGINT or SIGTERM; --device applies to every request");
  for (CLI::Option* o : cli::add_http_flags(&app, f.http)) o->needs(serve)->group("--serve");
  // Tests only (hidden): make one rank die (on its Nth scan), hang (on its first) or stop halfway through its
  // first answer.
  app.add_option("--test-die-rank", f.rank.die_rank)->group("");
  app.add_option("--test-die-scan", f.rank.die_scan)->group("")->check(CLI::PositiveNumber);
  app.add_option("--test-hang-rank", f.rank.hang_rank)->group("");
  app.add_option("--test-stall-rank", f.rank.stall_rank)->group("");

  // Every rank parses the same argv alike: rank 0 alone prints, all return the same code.
  int code = 0;
  bool parsed = false;
  {
    std::ostringstream devnull;
    try {
      app.parse(argc, argv);
      parsed = true;
    } catch (const CLI::ParseError& e) {
      code = rank == 0 ? app.exit(e) : app.exit(e, devnull, devnull);
      if (code != 0) code = 2;
    }
  }
  if (!parsed) return code;
  // The plain query dies of a stop signal as any program does; --serve takes them (main blocked them).
  if (!f.serve) cli::HttpService::unblock_stop_signals();

  // Setup: rank 0 opens and checks the whole set (its catalogs answer the
  // queries), every other rank opens its own stores; all agree to go on.
  std::unique_ptr<StoreSet> set;
  std::vector<std::unique_ptr<Store>> mine;
  std::vector<size_t> mine_idx;
  std::string setup_error;
  try {
    f.rank.chunk_bytes = mpi::chunk_bytes_from_env();
    check_serve_flags(f);
    if (f.serve && thread_level < MPI_THREAD_SERIALIZED)
      throw InvalidArgument("--serve calls MPI from its request threads, one at a time, and this MPI gives no "
                            "MPI_THREAD_SERIALIZED (level " + std::to_string(thread_level) + ")");
    cli::finish_query_flags(f.query);
    const std::vector<std::string> paths =
        f.stores_file.empty() ? f.stores : read_store_manifest(f.stores_file, "--stores");
    if (paths.empty()) throw InvalidArgument("give the set's stores with --store (repeatable) or --stores FILE");
    if (rank == 0) {
      set = std::make_unique<StoreSet>(paths);
    } else {
      mine_idx = mpi::stores_of_rank(paths.size(), rank, size);
      for (size_t i : mine_idx) mine.push_back(Store::open(paths[i]));
    }
  } catch (const Error& e) {
    setup_error = e.what();
  }
  const std::vector<std::string> errors = gather_text(setup_error, rank, size, f.rank.chunk_bytes);
  // Each rank's generation of each of its stores: rank 0 joins catalog rows
  // of its own, so a store rebuilt between the ranks' opening would pair rows
  // with the wrong objects. One line per store: "index generation-path".
  std::string generations;
  for (size_t j = 0; j < mine.size(); ++j)
    generations += std::to_string(mine_idx[j]) + " " + mine[j]->generation_path() + "\n";
  const std::vector<std::string> opened = gather_text(generations, rank, size, f.rank.chunk_bytes);
  int go = 1;
  if (rank == 0)
    for (int r = 0; r < size; ++r)
      if (!errors[r].empty()) {
        std::cerr << "error: " << (r == 0 ? "" : "rank " + std::to_string(r) + ": ") << errors[r] << "\n";
        go = 0;
        if (r == 0) break;  // rank 0 checked the whole set: the others' errors repeat its own
      }
  if (rank == 0 && go)
    for (int r = 1; r < size && go; ++r) {
      std::istringstream lines(opened[r]);
      std::string line;
      while (go && std::getline(lines, line)) {
        const size_t cut = line.find(' ');
        const size_t i = std::stoul(line.substr(0, cut));  // written just above: digits
        const std::string gen = line.substr(cut + 1);      // a path may hold spaces
        if (i >= set->size() || gen != set->store(i).generation_path()) {
          std::cerr << "error: rank " << r << " opened " << gen << " of store '" << (i < set->size() ? set->path(i) : "?")
                    << "' and rank 0 " << (i < set->size() ? set->store(i).generation_path() : "none")
                    << ": the store was rebuilt while the job started; run it again\n";
          go = 0;
        }
      }
    }
  MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!go) return 1;

  if (rank != 0) {
    mpi::serve_scans(rank, mine_idx, mine, f.rank);
    return 0;
  }
  const bool test_chunk = f.rank.chunk_bytes != mpi::kDefaultChunkBytes;
  if (test_chunk)
    std::cerr << "warning: " << mpi::kChunkVariable << "=" << f.rank.chunk_bytes
              << ": MPI messages go in pieces of at most that many bytes (a setting for tests; unset, "
              << mpi::kDefaultChunkBytes << ")\n";
  try {
    code = f.serve ? mpi::run_set_service(*set, f.http, f.query.q.search.device, f.rank) : run_rank0(*set, f);
  } catch (const mpi::RankLost&) {
    throw;  // the job cannot end in step: main aborts it
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    code = 1;
  }
  mpi::stop_ranks();
  if (test_chunk) {
    const mpi::Traffic t = mpi::traffic();
    std::cerr << "note: rank 0 moved " << t.messages << " messages of " << t.bytes << " bytes in " << t.pieces
              << " pieces\n";
  }
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // Before MPI starts its threads, so that none takes a stop signal: --serve
  // takes them on one thread of rank 0 (the other ranks stop when rank 0 says).
  mmu::cli::HttpService::block_stop_signals();
  // The service's request threads call MPI one at a time (set_service.cpp).
  int thread_level = MPI_THREAD_SINGLE;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &thread_level);
  // Errors come back as codes (rank_scanner turns them into messages naming the rank).
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int code = 0;
  try {
    code = run(argc, argv, rank, size, thread_level);
  } catch (const std::exception& e) {
    // A rank is lost (or a bug): the others cannot be stopped in step, so end the job.
    std::cerr << "error: " << e.what() << "\n" << std::flush;
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return code;
}
