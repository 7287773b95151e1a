package control

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/ike"
)

// Reload re-reads the configuration file. An invalid file, or one that
// changes what only a restart can change, leaves the running configuration
// untouched; connections whose settings did not change keep their SAs.
func (d *Daemon) Reload(ctx context.Context) (api.ReloadResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()

	next, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		d.metrics.reloads.WithLabelValues("failure").Inc()
		d.log.Error("reload failed, keeping the running configuration",
			zap.String("config", d.opts.ConfigPath), zap.Error(err))
		return api.ReloadResult{}, fmt.Errorf("reload %s: %w", d.opts.ConfigPath, err)
	}
	if err := CheckSupported(next); err != nil {
		d.metrics.reloads.WithLabelValues("failure").Inc()
		d.log.Error("reload refused, keeping the running configuration",
			zap.String("config", d.opts.ConfigPath), zap.Error(err))
		return api.ReloadResult{}, fmt.Errorf("reload %s: %w", d.opts.ConfigPath, err)
	}
	cur := d.config()
	if err := restartOnlyChanges(cur, next); err != nil {
		d.metrics.reloads.WithLabelValues("failure").Inc()
		d.log.Error("reload refused, keeping the running configuration",
			zap.String("config", d.opts.ConfigPath), zap.Error(err))
		return api.ReloadResult{}, err
	}
	res := diffConnections(cur, next)

	conns, err := ikeConns(next)
	if err != nil {
		d.metrics.reloads.WithLabelValues("failure").Inc()
		return api.ReloadResult{}, err
	}
	d.mu.Lock()
	d.cfg = next
	d.loadedAt = time.Now()
	runCtx, engine, inst := d.runCtx, d.engine, d.inst
	d.mu.Unlock()
	if !d.opts.LevelPinned {
		if lvl, err := ParseLevel(next.Log.Level); err == nil {
			d.opts.Level.SetLevel(lvl)
		}
	}
	d.metrics.reloads.WithLabelValues("success").Inc()
	d.metrics.connections.Set(float64(len(next.Connections)))
	// The fence follows the configuration: added connections are held
	// before they negotiate, removed ones released.
	if d.ks != nil {
		if _, err := d.ks.Sync(killSwitchPairs(next)); err != nil {
			d.log.Error("kill switch not in step with the configuration", zap.Error(err))
		}
	}
	// Before Run has opened the engine there is nothing to update: open
	// reads the new configuration.
	if engine != nil {
		inst.setConns(conns)
		res.Actions = d.applyConns(runCtx, cur, next, engine.SetConns(conns))
	}
	for _, name := range res.Added {
		d.logConnection("connection added", findConn(next, name))
	}
	for _, name := range res.Removed {
		d.log.Info("connection removed", zap.String("conn", name))
	}
	d.log.Info("configuration reloaded",
		zap.String("config", d.opts.ConfigPath),
		zap.Int("added", len(res.Added)), zap.Int("removed", len(res.Removed)),
		zap.Int("changed", len(res.Changed)), zap.Int("unchanged", len(res.Unchanged)))
	return res, nil
}

// applyConns carries out, after the engine has taken the new
// connections, what each change needs of the daemon, and reports the
// engine's verdicts by connection: a connection that needs a new IKE SA,
// a new one, or one switched to start_action start is brought up
// through the same de-duplicated, retrying bring-up as at start-up;
// one that is gone stops trying.
func (d *Daemon) applyConns(runCtx context.Context, cur, next *config.Config, changes []ike.ConnChange) map[string]string {
	actions := make(map[string]string, len(changes))
	for _, ch := range changes {
		actions[ch.Conn] = ch.Change.String()
		if ch.Change == ike.ChangeRemoved {
			d.stopBringUp(ch.Conn)
			continue
		}
		c := findConn(next, ch.Conn)
		if c == nil {
			continue
		}
		if ch.Change != ike.ChangeAdded && ch.Change != ike.ChangeNone {
			d.log.Info("connection changed", zap.String("conn", c.Name), zap.Stringer("needs", ch.Change),
				zap.Strings("children", ch.Children))
		}
		old := findConn(cur, ch.Conn)
		switch {
		case ch.Change == ike.ChangeAdded, ch.Change == ike.ChangeIKE:
			d.bringUp(runCtx, nil, c)
		case old != nil && old.StartAction != c.StartAction:
			if c.StartAction == "start" {
				d.bringUp(runCtx, nil, c)
			} else {
				d.stopBringUp(c.Name)
			}
		}
	}
	return actions
}

// restartOnlyChanges refuses reloads that touch settings bound at startup
// (sockets, interfaces, data plane), since applying half of them would leave
// the daemon in a state no file describes.
func restartOnlyChanges(cur, next *config.Config) error {
	var changed []string
	if cur.API != next.API {
		changed = append(changed, "api")
	}
	if cur.Metrics != next.Metrics {
		changed = append(changed, "metrics")
	}
	if !reflect.DeepEqual(cur.Dataplane, next.Dataplane) {
		changed = append(changed, "dataplane")
	}
	if !reflect.DeepEqual(cur.IKE, next.IKE) {
		changed = append(changed, "ike")
	}
	if len(changed) > 0 {
		return fmt.Errorf("reload changes %v, which only take effect on restart: restart xdpsecd (or revert them) to reload", changed)
	}
	return nil
}

func diffConnections(cur, next *config.Config) api.ReloadResult {
	res := api.ReloadResult{Added: []string{}, Removed: []string{}, Changed: []string{}, Unchanged: []string{}}
	for i := range next.Connections {
		n := &next.Connections[i]
		c := findConn(cur, n.Name)
		switch {
		case c == nil:
			res.Added = append(res.Added, n.Name)
		case reflect.DeepEqual(*c, *n):
			res.Unchanged = append(res.Unchanged, n.Name)
		default:
			res.Changed = append(res.Changed, n.Name)
		}
	}
	for i := range cur.Connections {
		if findConn(next, cur.Connections[i].Name) == nil {
			res.Removed = append(res.Removed, cur.Connections[i].Name)
		}
	}
	return res
}
