package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/feastrepo"
)

func feastRepoCmd() *cobra.Command {
	var out, url, repoDir, project string
	cmd := &cobra.Command{
		Use:   "feast-repo --out DIR [--url http://host:port]",
		Short: "Write a Feast feature repo describing tally's repo, for Feast's SDK through its remote online store",
		Long: `feast-repo writes DIR/feature_store.yaml (online_store: {type: remote, path: URL})
and DIR/tally_repo.py (entities, a push source and events view per source, feature
views, table views, on-demand views for request views, feature services). Run
'feast apply' in DIR; then FeatureStore(DIR).get_online_features and .push reach
the tally node at URL. Only those two files in DIR are overwritten.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out DIR is required: the directory to write the Feast repo in")
			}
			repo, _, err := loadRepo(repoDir)
			if err != nil {
				return err
			}
			notes, err := feastrepo.Write(out, repo, feastrepo.Options{URL: url, Project: project})
			if err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s/%s and %s/%s; run 'feast apply' there\n", out, feastrepo.ConfigFile, out, feastrepo.RepoFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the Feast repo in (created if needed)")
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:8080", "the tally node's base URL (Feast's online_store.path)")
	cmd.Flags().StringVar(&repoDir, "repo", "", "tally feature repo directory (default: the embedded fraud repo)")
	cmd.Flags().StringVar(&project, "project", "tally", "the Feast project name")
	return cmd
}
