// Command follower-sync consumes the sync queue: the page and chunk jobs of
// a follower backfill (shared/backfill).
package main

import (
	"wxbridge/functions/follower-sync/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("follower-sync", handler.Build) }
