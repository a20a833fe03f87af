import Cryptography
import DaemonSupport
import FenceBus

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct KeygenCommand: Subcommand {
    static let bytesOption = Usage.Option.value("bytes", "bytes", "How many random bytes (32 to 65536).", default: "4096")
    static let hostOption = Usage.Option.value("host", "name", "An identity key pair for the fence-hostd of this host id.")
    static let routerOption = Usage.Option.value("router", "name", "An identity key pair for the fence-routerd of this router id.")
    static let operatorOption = Usage.Option.value("operator", "name", "An identity key pair for this operator.")
    static let trustOption = Usage.Option.value("trust-directory", "directory", "Also file the public key in this trust directory.",
                                                completion: .directories)

    static let usage = Usage(
        path: ["keygen"],
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
            """,
        arguments: [Usage.Argument(name: "path", help: "Where to write the key.", completion: .files)],
        options: [bytesOption, hostOption, routerOption, operatorOption, trustOption]
    )

    let path: String
    let bytes: Int
    let identity: (role: BusRole, name: String)?
    let trustDirectory: String?

    init(_ line: ParsedCommandLine) throws(UsageError) {
        path = line.arguments[0]
        bytes = try line.integer(defaulted: Self.bytesOption)
        trustDirectory = line.value(Self.trustOption)
        guard (32...65_536).contains(bytes) else { throw UsageError("--bytes must be between 32 and 65536") }
        let roles: [(BusRole, String)] = [(.host, Self.hostOption), (.router, Self.routerOption), (.operator, Self.operatorOption)]
            .compactMap { role, option in line.value(option).map { (role, $0) } }
        guard roles.count <= 1 else { throw UsageError("one of --host, --router and --operator at a time") }
        identity = roles.first.map { (role: $0.0, name: $0.1) }
        if let identity, !BusIdentity.isValidName(identity.name) {
            throw UsageError("\"\(identity.name)\" cannot be a name on the bus: letters, digits, '-', '_' and '.', at most 64")
        }
        if trustDirectory != nil, identity == nil {
            throw UsageError("--trust-directory files an identity's public key: add --host, --router or --operator")
        }
    }

    func run() throws -> ExitStatus {
        guard let identity else {
            try SecretFile.create(path, contents: SecureRandom.bytes(bytes))
            print("wrote \(bytes) random bytes to \(path) (mode 0600)")
            return .success
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
        return .success
    }
}
