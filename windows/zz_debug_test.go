package windows

import "fmt"

func Breakdown(v *View) string {
	var capW, lenW, dead, ents, keys, idx, free, live int64
	for i := range v.parts {
		p := &v.parts[i]
		capW += int64(cap(p.words))*8 + int64(cap(p.rw))*4
		lenW += int64(len(p.words))*8 + int64(len(p.rw))*4
		dead += int64(p.deadW)*8 + int64(p.deadR)*4
		ents += int64(cap(p.ents)) * 48
		keys += int64(cap(p.keys))
		idx += p.index.bytes()
		for _, l := range p.free {
			free += int64(cap(l)) * 4
		}
		live += int64(p.live)
	}
	return fmt.Sprintf("per entity: capW %d lenW %d dead %d ents %d keys %d idx %d free %d", capW/live, lenW/live, dead/live, ents/live, keys/live, idx/live, free/live)
}
