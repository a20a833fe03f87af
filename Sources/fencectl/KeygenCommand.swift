import ArgumentParser
import Cryptography
import DaemonSupport

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a new random key, readable by its owner only (0600).",
        discussion: """
            The fence_xvm key (4096 bytes, the default) goes to every guest and host of a cluster, as \
            /etc/cluster/fence_xvm.key. The bus key (--bytes 64) goes to every router and host agent. An existing \
            file is never replaced.
            """
    )

    @Argument(help: "Where to write the key.") var path: String
    @Option(help: "How many random bytes (32 to 65536).") var bytes = 4096

    func validate() throws {
        guard (32...65_536).contains(bytes) else { throw ValidationError("--bytes must be between 32 and 65536") }
    }

    func run() throws {
        try SecretFile.create(path, contents: SecureRandom.bytes(bytes))
        print("wrote \(bytes) random bytes to \(path) (mode 0600)")
    }
}
