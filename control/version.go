package control

import "runtime/debug"

// baseVersion is bumped by hand at each release; builds from a checkout add
// the commit so that `xdpsecctl version` identifies the exact binary.
const baseVersion = "0.1.0-dev"

// Version reports the release and, when the toolchain recorded it, the VCS
// revision the binary was built from.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return baseVersion
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if revision == "" {
		return baseVersion
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	return baseVersion + "+" + revision + modified
}
