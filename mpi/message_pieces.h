// How mmu-search-mpi cuts a message into pieces: MPI counts are `int`, so a
// batch of 10^6 queries x 512 floats (2 GB) or its reply (several GB) cannot
// go in one call; no call moves more than a chunk. Plain arithmetic without
// MPI, so that the unit tests check it at sizes past 2^31 without the bytes.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "mmu/error.h"

namespace mmu::mpi {

// The most bytes one MPI call moves unless MMU_MPI_CHUNK_BYTES says otherwise.
constexpr int64_t kDefaultChunkBytes = int64_t{512} << 20;
// Tests only: a tiny chunk (e.g. 1000) splits every message into many pieces.
constexpr const char* kChunkVariable = "MMU_MPI_CHUNK_BYTES";

// The chunk that `value` (MMU_MPI_CHUNK_BYTES; nullptr or "" when unset)
// asks for: a whole number in [1, INT_MAX]. Throws InvalidArgument naming
// the variable otherwise.
inline int64_t parse_chunk_bytes(const char* value) {
  if (value == nullptr || *value == '\0') return kDefaultChunkBytes;
  int64_t n = 0;
  for (const char* c = value; *c != '\0'; ++c) {
    if (*c < '0' || *c > '9' || n > INT_MAX) {
      n = -1;
      break;
    }
    n = n * 10 + (*c - '0');
  }
  if (n < 1 || n > INT_MAX)
    throw InvalidArgument(std::string(kChunkVariable) + "='" + value + "': give a whole number of bytes from 1 to " +
                          std::to_string(INT_MAX) + " (a setting for tests; unset, MPI messages go in pieces of " +
                          std::to_string(kDefaultChunkBytes) + " bytes)");
  return n;
}

// The number of pieces a `total`-byte message goes in (0 for an empty one).
inline int64_t piece_count(int64_t total, int64_t chunk) { return total <= 0 ? 0 : (total - 1) / chunk + 1; }

// The bytes of the piece that starts `done` bytes into a `total`-byte
// message: at most `chunk` (<= INT_MAX), so it fits an MPI count.
inline int piece_bytes(int64_t total, int64_t done, int64_t chunk) {
  return static_cast<int>(std::min(chunk, total - done));
}

}  // namespace mmu::mpi
