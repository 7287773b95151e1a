// Command xdpsecctl controls a running xdpsecd over its API socket.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpsec/xdpsec/control"
	"github.com/xdpsec/xdpsec/control/api"
)

func main() {
	if err := newRootCommand(os.Stdout).ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "xdpsecctl:", err)
		os.Exit(1)
	}
}

type globals struct {
	socket string
	json   bool
}

func (g *globals) client() *api.Client { return api.NewClient(g.socket) }

func newRootCommand(out io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "xdpsecctl",
		Short: "Control a running xdpsecd",
		Long: `xdpsecctl talks to xdpsecd over its API socket (HTTP/JSON under /v1/).
Output is a table for people; --json prints the API's JSON for scripts.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defaultSocket := api.DefaultSocket
	if env := os.Getenv("XDPSEC_SOCKET"); env != "" {
		defaultSocket = env
	}
	root.PersistentFlags().StringVarP(&g.socket, "socket", "s", defaultSocket, "daemon API socket (env XDPSEC_SOCKET)")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print JSON instead of tables")
	root.SetOut(out)
	root.AddCommand(statusCommand(g), connsCommand(g), sasCommand(g), statsCommand(g), upCommand(g), downCommand(g), rekeyCommand(g), reloadCommand(g), versionCommand(g))
	return root
}

func statusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's version, uptime, configuration file and data plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(cmd, g, g.client().Status, printStatus)
		},
	}
}

func printStatus(w io.Writer, st api.Status) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "version:\t%s\n", st.Version)
	fmt.Fprintf(tw, "pid:\t%d\n", st.PID)
	fmt.Fprintf(tw, "uptime:\t%s (since %s)\n",
		(time.Duration(st.UptimeSeconds) * time.Second).String(), st.StartedAt.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "config:\t%s (loaded %s)\n", st.ConfigFile, st.ConfigLoadedAt.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "data plane:\t%s\n", st.DataplaneMode)
	fmt.Fprintf(tw, "connections:\t%d\n", st.Connections)
	for _, in := range st.Initiations {
		fmt.Fprintf(tw, "not up:\t%s: %s\n", in.Conn, initiationText(in.Initiation, time.Now()))
	}
	return tw.Flush()
}

// initiationText sums up a connection's bring-up in one line: its
// state, the failed attempts in a row, the next attempt and the last
// error.
func initiationText(in api.Initiation, now time.Time) string {
	s := in.State
	if in.Failures > 0 {
		s += fmt.Sprintf(", %d failed attempts", in.Failures)
	}
	if in.NextAttempt != nil {
		s += ", next " + untilText(now, *in.NextAttempt)
	}
	if in.LastError != "" {
		s += fmt.Sprintf(", last error (%s): %s", in.LastReason, in.LastError)
	}
	return s
}

// show fetches one API answer and prints it as JSON or, for people, with
// table; every command that prints one API answer is this.
func show[T any](cmd *cobra.Command, g *globals, fetch func(context.Context) (T, error), table func(io.Writer, T) error) error {
	v, err := fetch(cmd.Context())
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(cmd.OutOrStdout(), v)
	}
	return table(cmd.OutOrStdout(), v)
}

func connsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "conns",
		Short: "List the configured connections and their children",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(cmd, g, g.client().Conns, printConns)
		},
	}
}

func printConns(w io.Writer, conns []api.Conn) error {
	if len(conns) == 0 {
		_, err := fmt.Fprintln(w, "no connections configured")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "CONN\tLOCAL\tREMOTE\tLOCAL ID\tREMOTE ID\tAUTH\tSTART\tIKE PROPOSALS\tESP PROPOSALS")
	for _, c := range conns {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, orAny(c.LocalAddr), c.RemoteAddr,
			c.LocalID, c.RemoteID, c.Auth, c.StartAction,
			strings.Join(c.IKEProposals, ","), strings.Join(c.ESPProposals, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "CONN/CHILD\tMODE\tLOCAL TS\tREMOTE TS\tLIFETIME\tREPLAY WINDOW")
	for _, c := range conns {
		for _, ch := range c.Children {
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%d\n", c.Name, ch.Name, ch.Mode,
				strings.Join(ch.LocalTS, ","), strings.Join(ch.RemoteTS, ","), ch.Lifetime, ch.ReplayWindow)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printInitiations(w, conns, time.Now())
}

// printInitiations lists the bring-ups of start_action start connections.
func printInitiations(w io.Writer, conns []api.Conn, now time.Time) error {
	tw := newTable(w)
	header := false
	for _, c := range conns {
		in := c.Initiation
		if in == nil {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(tw, "CONN\tBRING-UP\tFAILURES\tNEXT ATTEMPT\tLAST ERROR")
			header = true
		}
		next := "-"
		if in.NextAttempt != nil {
			next = untilText(now, *in.NextAttempt)
		}
		lastErr := "-"
		if in.LastError != "" {
			lastErr = in.LastReason + ": " + in.LastError
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.Name, in.State, in.Failures, next, lastErr)
	}
	return tw.Flush()
}

func sasCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sas",
		Short: "List the IKE SAs and their CHILD SAs",
		Long: `sas lists every IKE SA with its state, role, addresses, NAT detection,
SPIs and negotiated algorithms, and under it each CHILD SA with its SPIs,
mode, encapsulation, traffic selectors, traffic counters, age, time to
its next rekey ("-" when none is planned) and rekey count.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(cmd, g, g.client().SAs, printSAs)
		},
	}
}

// printSAs lays SAs out like `swanctl --list-sas`: one block per IKE SA,
// its children indented under it.
func printSAs(w io.Writer, sas []api.IKESA) error {
	return printSAsAt(w, sas, time.Now())
}

// printSAsAt prints the SAs with ages and rekey times as of now.
func printSAsAt(w io.Writer, sas []api.IKESA, now time.Time) error {
	if len(sas) == 0 {
		_, err := fmt.Fprintln(w, "no SAs")
		return err
	}
	for i, sa := range sas {
		if i > 0 {
			fmt.Fprintln(w)
		}
		role := "responder"
		if sa.Initiator {
			role = "initiator"
		}
		fmt.Fprintf(w, "%s: %s, %s, %s -> %s, nat: %s\n", sa.Conn, sa.State, role, sa.Local, sa.Remote, natText(sa.NAT))
		fmt.Fprintf(w, "  IKE SPIs %s_i %s_r, %s, established %s, rekey %s, %d rekeys\n", sa.SPIi, sa.SPIr, orDash(sa.Proposal),
			ageText(now, sa.Established), untilText(now, sa.RekeyAt), sa.Rekeys)
		for _, c := range sa.Children {
			if c.State == "DOWN" {
				fmt.Fprintf(w, "  %s: DOWN for %s: %s; next attempt %s, %d failed so far\n", c.Name, durationSince(now, c.DownSince),
					c.Reason, nextAttemptText(now, c.RetryAt), c.Attempts)
				continue
			}
			encap := "ESP"
			if c.Encap {
				encap = "ESP-in-UDP"
			}
			fmt.Fprintf(w, "  %s: %s, %s, %s, SPIs %s_in %s_out, %s\n", c.Name, c.State, strings.ToLower(c.Mode), encap, c.SPIIn, c.SPIOut, orDash(c.Proposal))
			fmt.Fprintf(w, "    %s === %s\n", strings.Join(c.LocalTS, ","), strings.Join(c.RemoteTS, ","))
			offloaded := ""
			if c.Offload != "" {
				offloaded = ", " + c.Offload + " offload"
			}
			fmt.Fprintf(w, "    in %d bytes, %d packets; out %d bytes, %d packets%s\n", c.BytesIn, c.PacketsIn, c.BytesOut, c.PacketsOut, offloaded)
			fmt.Fprintf(w, "    age %s, rekey %s, %d rekeys\n", durationSince(now, c.Established), untilText(now, c.RekeyAt), c.Rekeys)
			if c.Reason != "" {
				fmt.Fprintf(w, "    %s\n", c.Reason)
			}
		}
	}
	return nil
}

// nextAttemptText says when a lost child is tried again: "in 4s", or
// "with the next IKE SA" while the connection is established afresh.
func nextAttemptText(now, t time.Time) string {
	if t.IsZero() {
		return "with the next IKE SA"
	}
	return untilText(now, t)
}

// durationSince is how long ago t was, "-" when unknown.
func durationSince(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Truncate(time.Second).String()
}

// untilText says when a rekey is due: "in 5m0s", "due" once the time has
// passed (the rekey is under way), "-" when none is planned.
func untilText(now, t time.Time) string {
	switch {
	case t.IsZero():
		return "-"
	case !t.After(now):
		return "due"
	}
	return "in " + t.Sub(now).Truncate(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func statsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show data-plane drops by reason, worker load, XDP verdicts and IKE counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(cmd, g, g.client().Stats, printStats)
		},
	}
}

func printStats(w io.Writer, st api.Stats) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "data plane:\t%s\n", st.Dataplane)
	fmt.Fprintf(tw, "drops:\t%s\n", counterList(st.Drops))
	if len(st.Paths) > 0 {
		keys := slices.Sorted(maps.Keys(st.Paths))
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+" "+st.Paths[k])
		}
		fmt.Fprintf(tw, "paths:\t%s\n", strings.Join(parts, ", "))
	}
	if len(st.Workers) > 0 {
		parts := make([]string, 0, len(st.Workers))
		for i, n := range st.Workers {
			parts = append(parts, fmt.Sprintf("#%d %d", i, n))
		}
		fmt.Fprintf(tw, "worker packets:\t%s\n", strings.Join(parts, ", "))
	}
	for _, side := range []string{"wan", "lan"} {
		if c, ok := st.XDP[side]; ok {
			fmt.Fprintf(tw, "xdp %s:\t%s\n", side, counterList(c))
		}
	}
	if st.AFXDP != nil {
		fmt.Fprintf(tw, "af_xdp sockets:\t%s\n", counterList(st.AFXDP))
	}
	fmt.Fprintf(tw, "ike:\t%d IKE SAs, %d half-open (%d evicted), %d cookies sent, %d retransmits, %d cached responses\n",
		st.IKE.IKESAs, st.IKE.HalfOpen, st.IKE.HalfOpenEvicted, st.IKE.CookiesSent, st.IKE.Retransmits, st.IKE.CachedResponses)
	fmt.Fprintf(tw, "nat keepalives:\t%d sent, %d received\n", st.IKE.KeepalivesSent, st.IKE.KeepalivesReceived)
	fmt.Fprintf(tw, "ike dropped:\t%s\n", counterList(st.IKE.Dropped))
	fmt.Fprintf(tw, "rekeys:\t%d child, %d ike; %d dead peers\n", st.IKE.ChildRekeys, st.IKE.IKERekeys, st.IKE.DeadPeers)
	sas := make([]string, 0, len(st.SAs))
	for _, sa := range st.SAs {
		sas = append(sas, sa.SPI+"/"+sa.Dir)
	}
	if len(sas) == 0 {
		sas = append(sas, "none")
	}
	fmt.Fprintf(tw, "data plane SAs:\t%s\n", strings.Join(sas, " "))
	return tw.Flush()
}

// counterList prints the non-zero counters sorted by name; all-zero
// counters say so instead of filling the screen.
func counterList(m map[string]uint64) string {
	names := make([]string, 0, len(m))
	for k, v := range m {
		if v != 0 {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	slices.Sort(names)
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func natText(n api.NAT) string {
	switch {
	case n.Local && n.Remote:
		return "both"
	case n.Local:
		return "local"
	case n.Remote:
		return "remote"
	default:
		return "none"
	}
}

func ageText(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return durationSince(now, t) + " ago"
}

func upCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "up CONN",
		Short: "Initiate a connection and wait until it is established or has failed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().Up(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "connection %s established\n", args[0])
			return nil
		},
	}
}

func downCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down CONN",
		Short: "Delete a connection's SAs, at the peer too, and wait for the peer's answer",
		Long: `down deletes the IKE SA of CONN and with it its CHILD SAs, telling the peer
(INFORMATIONAL Delete), and stops any restart of it. Trap policies of a
connection with start_action trap stay, so its next packet brings it up again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().Down(cmd.Context(), args[0]); err != nil {
				return err
			}
			return printDone(cmd, g, api.ConnResult{Conn: args[0]}, fmt.Sprintf("connection %s closed", args[0]))
		},
	}
}

func rekeyCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rekey CONN[/CHILD]",
		Short: "Rekey a connection's IKE SA, or one of its CHILD SAs, now",
		Long: `rekey CONN rekeys the IKE SA of CONN; rekey CONN/CHILD rekeys that CHILD SA
(make-before-break: the new SA carries traffic before the old one goes). It
waits until the new SA is in place.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, child, slash := strings.Cut(args[0], "/")
			if conn == "" || (slash && child == "") {
				return fmt.Errorf("rekey %q: want CONN or CONN/CHILD", args[0])
			}
			if err := g.client().Rekey(cmd.Context(), conn, child); err != nil {
				return err
			}
			what := "IKE SA of " + conn
			if child != "" {
				what = "CHILD SA " + conn + "/" + child
			}
			return printDone(cmd, g, api.ConnResult{Conn: conn, Child: child}, what+" rekeyed")
		},
	}
}

// printDone reports a finished action: the API's answer with --json, a
// sentence otherwise.
func printDone(cmd *cobra.Command, g *globals, res api.ConnResult, msg string) error {
	if g.json {
		return printJSON(cmd.OutOrStdout(), res)
	}
	_, err := fmt.Fprintln(cmd.OutOrStdout(), msg)
	return err
}

func reloadCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Re-read the daemon's configuration file (like SIGHUP)",
		Long: `reload makes the daemon re-read its configuration file. An invalid file is
refused with every problem listed and the running configuration stays as it
is; connections whose settings did not change keep their SAs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(cmd, g, g.client().Reload, printReload)
		},
	}
}

func printReload(w io.Writer, res api.ReloadResult) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "added:\t%s\n", listOrNone(res.Added))
	fmt.Fprintf(tw, "removed:\t%s\n", listOrNone(res.Removed))
	fmt.Fprintf(tw, "changed:\t%s\n", listOrNone(res.Changed))
	fmt.Fprintf(tw, "unchanged:\t%s\n", listOrNone(res.Unchanged))
	for _, name := range res.Changed {
		if a, ok := res.Actions[name]; ok {
			fmt.Fprintf(tw, "%s needs:\t%s\n", name, a)
		}
	}
	return tw.Flush()
}

func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the versions of xdpsecctl and, if reachable, of xdpsecd",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			type versions struct {
				Client string `json:"client"`
				Daemon string `json:"daemon,omitempty"`
			}
			v := versions{Client: control.Version()}
			// The client version is useful even when no daemon runs.
			if st, err := g.client().Status(cmd.Context()); err == nil {
				v.Daemon = st.Version
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "xdpsecctl %s\n", v.Client)
			if v.Daemon != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "xdpsecd   %s\n", v.Daemon)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "xdpsecd   not reachable at %s\n", g.socket)
			}
			return nil
		},
	}
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ", ")
}

func orAny(addr string) string {
	if addr == "" {
		return "%any"
	}
	return addr
}
