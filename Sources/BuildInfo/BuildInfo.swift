/// What was built: the project's one version, and the git commit when built from a checkout
/// (written by the GitCommit plugin; nil from a source tarball).
public enum BuildInfo {
    /// The version of fence-router, the same for its three programs; CHANGELOG.md says what each one brought.
    public static let version = "0.9.0"

    public static var commit: String? { GeneratedBuildInfo.commit }

    /// `0.9.0 (commit 1a2b3c4d5e6f)`, or `0.9.0` without a commit.
    public static var description: String {
        commit.map { "\(version) (commit \($0))" } ?? version
    }
}
