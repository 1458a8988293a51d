// Package sipp holds the sipp scenario pack: sign-in, click-to-dial,
// incoming call and answer, hold/retrieve, transfer, link loss and
// re-INVITE. The scenarios double as examples for operators aiming sipp at
// a deployment; the package embeds them so the demo can hand them out.
package sipp

import "embed"

// Files holds every scenario (*.xml) and user file (*.csv) of the pack.
//
//go:embed *.xml *.csv
var Files embed.FS
