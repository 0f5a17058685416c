// The gallery of `mmu-search serve`: the page at / (web/, embedded in the
// binary) and the endpoints it draws objects with, each useful on its own:
//   GET /                                   the gallery page (GET /assets/<file>: its script and style)
//   GET /object/<survey>/<id>.json          position, modality, cross-match links, note
//   GET /cutout/<survey>/<id>.png?size=N    colour composite (object_view.h); a
//                                           placeholder when the file moved, with
//                                           the reason in header X-MMU-Note (percent-encoded)
//   POST /cutouts {"objects": [{"survey", "object_id"}], "size": N}
//                                           the cutouts of a page's grid at once, read by file:
//                                           {"cutouts": [{"survey", "object_id", "png" (base64),
//                                           "note", "bands"} or {"survey", "object_id", "error"}]};
//                                           at most 100 (fewer above 256 pixels)
//   POST /objects {"objects": [{"survey", "object_id"}]}
//                                           GET /object of each: {"objects": [{...} or {..., "error"}]}
//   GET /spectrum/<survey>/<id>.json        wavelength, flux, mask, catalogue redshift
//   GET /lightcurve/<survey>/<id>.json      usable points per band with errors
//   GET /map/<space>.json?colour=COLUMN     the space's vectors on their first two principal components
//                                           (with each object's value of a catalog column)
//   POST /hunt {"positives": [..], "negatives": [..], "method", k, space, ...}
//                                           `mmu-search hunt`'s ranking, as --format json prints it
//   POST /outliers {"neighbours", k, space, ...}  `mmu-search hunt --outliers`'s list
// Requests name objects only, never a file. <id> and <survey> are
// percent-encoded path segments (an id may hold any byte, '/' included).
#pragma once

#include <httplib.h>

#include <functional>

#include "mmu/query_json.h"
#include "mmu/store.h"

namespace mmu::cli {

// Runs its argument with the store that answers the current request (serve
// may switch stores between requests; the store stays valid during the call).
using WithStore = std::function<void(const std::function<void(const Store&)>&)>;

// Runs its argument in one of the slots of the queries computed at once (serve's --threads).
using InSlot = std::function<void(const std::function<void()>&)>;

// limits and max_body: serve's (--max-k, --max-ids, --max-body), for the POST routes; /hunt and
// /outliers are searches, computed in_slot as serve's own.
void add_gallery_routes(httplib::Server& server, WithStore with_store, const QueryLimits& limits, size_t max_body,
                        InSlot in_slot);

}  // namespace mmu::cli
