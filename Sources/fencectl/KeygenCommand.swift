import ArgumentParser
import Cryptography
import DaemonSupport
import FenceBus

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a new key, readable by its owner only (0600).",
        discussion: """
            Without a role: random bytes. The fence_xvm key (4096 bytes, the default) goes to every guest and host of a \
            cluster, as /etc/cluster/fence_xvm.key. The bus key (--bytes 64) goes to every router, host agent and \
            operator.

            With --host, --router or --operator NAME: an Ed25519 key pair that signs NAME's bus messages. The private \
            key goes to PATH; the public key to PATH with .pub for .key, for the trust directories of the others: a \
            host's into every router's hosts/NAME.pub, a router's into every host's routers/NAME.pub, an operator's \
            into every router's operators/NAME.pub. --trust-directory also files it there.

            An existing file is never replaced.
            """
    )

    @Argument(help: "Where to write the key.") var path: String
    @Option(help: "How many random bytes (32 to 65536).") var bytes = 4096
    @Option(help: ArgumentHelp("An identity key pair for the fence-hostd of this host id.", valueName: "name")) var host: String?
    @Option(help: ArgumentHelp("An identity key pair for the fence-routerd of this router id.", valueName: "name")) var router: String?
    @Option(name: .customLong("operator"), help: ArgumentHelp("An identity key pair for this operator.", valueName: "name")) var operatorName: String?
    @Option(help: ArgumentHelp("Also file the public key in this trust directory.", valueName: "directory")) var trustDirectory: String?

    var identity: (role: BusRole, name: String)? {
        if let host { return (.host, host) }
        if let router { return (.router, router) }
        return operatorName.map { (.operator, $0) }
    }

    func validate() throws {
        guard (32...65_536).contains(bytes) else { throw ValidationError("--bytes must be between 32 and 65536") }
        guard [host, router, operatorName].compactMap({ $0 }).count <= 1 else {
            throw ValidationError("one of --host, --router and --operator at a time")
        }
        if let identity, !BusIdentity.isValidName(identity.name) {
            throw ValidationError("\"\(identity.name)\" cannot be a name on the bus: letters, digits, '-', '_' and '.', at most 64")
        }
        if trustDirectory != nil, identity == nil {
            throw ValidationError("--trust-directory files an identity's public key: add --host, --router or --operator")
        }
    }

    func run() throws {
        guard let identity else {
            try SecretFile.create(path, contents: SecureRandom.bytes(bytes))
            print("wrote \(bytes) random bytes to \(path) (mode 0600)")
            return
        }
        let key = SigningKey()
        let publicPath = path.hasSuffix(".key") ? String(path.dropLast(4)) + ".pub" : path + ".pub"
        try SecretFile.create(path, contents: key.pem)
        do {
            try NewFile.create(publicPath, contents: key.verifyingKey.pem, mode: 0o644)
            if let trustDirectory {
                let folder = "\(trustDirectory)/\(identity.role.directory)"
                for directory in [trustDirectory, folder] where mkdir(directory, 0o755) != 0 && errno != EEXIST {
                    throw StartupError(.keyFile, "cannot create \(directory): \(String(cString: strerror(errno)))")
                }
                try NewFile.create("\(folder)/\(identity.name).pub", contents: key.verifyingKey.pem, mode: 0o644)
            }
        } catch {
            unlink(path)
            unlink(publicPath)
            throw error
        }
        let receivers = identity.role == .router ? "host" : "router"
        print("wrote the \(identity.role.rawValue) key of \(identity.name) to \(path) (mode 0600) and its public key to \(publicPath)")
        print("every \(receivers) believes it as <trust_directory>/\(identity.role.directory)/\(identity.name).pub"
            + (trustDirectory.map { " (filed in \($0))" } ?? ""))
    }
}
