"""The gateway's API, ``motcua.v1``: code generated from services/gateway/proto/motcua/v1/*.proto
by the build (``make proto``), never edited by hand and not kept in git."""
