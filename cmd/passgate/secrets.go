package main

import (
	"fmt"
	"slices"
)

// secretEnv are the environment variables that carry a secret. Each also
// has a NAME_FILE variant naming a file that holds the value (a Docker or
// Kubernetes secret mounted as a file), so that the secret need not sit in
// the process environment, where `docker inspect`, /proc/PID/environ and
// crash reports show it. The secrets passgate's own flags take
// (--registration-token-file, --api-key-file) are files already.
var secretEnv = []string{"DATABASE_URL", "OAUTH_CLIENT_SECRET", "OAUTH_PASSWORD_HASH", "API_KEY"}

// lookupEnv returns the value of the environment variable name, or, for a
// name in secretEnv, the contents of the file $NAME_FILE (surrounding white
// space trimmed). Setting both is an error, as is an unreadable or empty
// file. The error never contains the secret.
func lookupEnv(getenv func(string) string, name string) (string, error) {
	v := getenv(name)
	if !slices.Contains(secretEnv, name) {
		return v, nil
	}
	path := getenv(name + "_FILE")
	switch {
	case path == "":
		return v, nil
	case v != "":
		return "", fmt.Errorf("$%s and $%s_FILE are both set: set only one", name, name)
	}
	s, err := readSecretFile(path)
	if err != nil {
		return "", fmt.Errorf("$%s_FILE: %w", name, err)
	}
	if s == "" {
		return "", fmt.Errorf("$%s_FILE: %s is empty", name, path)
	}
	return s, nil
}
