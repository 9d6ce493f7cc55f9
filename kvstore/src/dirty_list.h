// DirtyList: host chunks that have no disk copy yet, most recently used first, threaded through
// ChunkEntry::dirty_prev/next. The demoter takes its batches from the cold end, so it never walks past
// chunks that are already on disk. Not thread-safe: guarded by Store::mu_.
#pragma once

#include "entry_list.h"

namespace kvtier {

class DirtyList : public EntryList<&ChunkEntry::dirty_prev, &ChunkEntry::dirty_next, &ChunkEntry::dirty> {};

}  // namespace kvtier
