package bench

import (
	"context"
	"encoding/json"
	"fmt"
)

// tallyFeastSystem is tally answering Feast's API (POST /get-online-features)
// with the very bodies the Feast peer gets: same keys, same 16 features.
const tallyFeastSystem = "tally-feast-api"

// runTallyFeastAPI measures tally's /get-online-features on the running
// node c reaches, after checking that one answer has every feature.
func (r *runner) runTallyFeastAPI(ctx context.Context, c *client) error {
	bodies := r.feastBodies()
	body, err := c.post(0, "/get-online-features", "application/json", bodies[0])
	if err != nil {
		return fmt.Errorf("first Feast-API lookup: %w", err)
	}
	var req struct{ Features []string }
	var resp struct {
		Results []struct{ Statuses []string }
	}
	if json.Unmarshal(bodies[0], &req) != nil || json.Unmarshal(body, &resp) != nil || len(resp.Results) != 3+len(req.Features) {
		return fmt.Errorf("first Feast-API lookup: want the 3 join keys and %d features, got %s", len(req.Features), body)
	}
	return r.lookupSuite(ctx, tallyFeastSystem, 0, func(w int, i int64) error {
		_, err := c.post(w, "/get-online-features", "application/json", bodies[i%int64(len(bodies))])
		return err
	})
}
