// Cross-match pairs as CSV, the form `mmu-index xmatch --format csv` writes.
#pragma once

#include <vector>

#include "mmu/crossmatch.h"
#include "mmu/sky_source.h"

namespace mmu {

// Writes the header and one row per pair (left_id, left_survey, right_id,
// right_survey, sep_arcsec as "%.6f") to file descriptor fd. With millions of
// pairs, formatting through printf or iostreams costs more than the match, so
// all threads format blocks of rows, written in order: the bytes do not depend
// on the number of threads. Throws IoError when fd takes fewer bytes than
// written (a full disk, a closed pipe).
void write_pairs_csv(const SkySource& left, const SkySource& right, const std::vector<MatchPair>& pairs, int fd);

// The same for a nearest match's pairs, read from its answers block by block:
// the same bytes as write_pairs_csv of match(..., false)'s pairs.
void write_nearest_csv(const SkySource& left, const SkySource& right, const NearestMatches& matches, int fd);

// The same for all pairs, read from the match's answers a block at a time:
// the same bytes as write_pairs_csv of match(..., true)'s pairs.
void write_all_pairs_csv(const SkySource& left, const SkySource& right, const AllPairMatches& matches, int fd);

}  // namespace mmu
