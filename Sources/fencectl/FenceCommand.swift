import DaemonSupport
import FenceBus
import FenceConfig
import FenceCore
import FenceWire
import JSONValue

struct FenceCommand: Subcommand {
    static let actionOption = Usage.Option.value("action", "action", "What to do to the domain.",
                                                 completion: .words(FenceAction.allCases.map(\.rawValue)), required: true)
    static let viaOption = Usage.Option.value("via", "listener", "Which listener of the file to use (default: the first one it lists).",
                                              completion: .words(ListenerKind.allCases.map(\.rawValue)))
    static let timeoutOption = Usage.Option.value("timeout", "seconds", "Give up after this many seconds, as fence_xvm's -t.", default: "30")

    static let usage = Usage(
        path: ["fence"],
        abstract: "Send a fence request through the router, as a guest's fence_xvm would.",
        discussion: """
            A test path for operators without a guest at hand. The request goes to the first listener of the \
            configuration file, signed with its key: to the multicast group (leaving by the listener's interface, \
            looped back to a router on this host, called back on this host's address there), or to the tcp \
            listener. Exit status as fence_xvm's: 0 done (status: on), 1 failed, 2 off, 3 permission denied.
            """,
        arguments: [Usage.Argument(name: "domain", help: "The domain's name or UUID.")],
        options: [actionOption, .configFile, viaOption, timeoutOption, .json]
    )

    let domain: String
    let action: FenceAction
    let configFile: String
    let via: ListenerKind?
    let timeout: Int
    let json: Bool

    init(_ line: ParsedCommandLine) throws(UsageError) {
        domain = line.arguments[0]
        // Required, and one of FenceAction's cases: the parser checked both.
        action = line.choice(Self.actionOption, as: FenceAction.self)!
        configFile = line.value(defaulted: .configFile)
        via = line.choice(Self.viaOption, as: ListenerKind.self)
        timeout = try line.integer(defaulted: Self.timeoutOption)
        json = line.flag(.json)
    }

    func run() throws -> ExitStatus {
        let configuration = try RouterConfiguration(document: ConfigurationFile.load(configFile))
        let kind = via ?? configuration.daemon.listeners[0]
        let deadline = ContinuousClock.now + .seconds(timeout)
        let code: UInt8
        do {
            switch kind {
            case .multicast:
                guard let listener = configuration.multicastListeners.first else { throw UsageError("\(configFile) has no multicast listener") }
                code = try client(listener.security, deadline).request(operation, domain: domain, multicast: listener)
            case .tcp:
                guard let listener = configuration.tcpListeners.first else { throw UsageError("\(configFile) has no tcp listener") }
                code = try client(listener.security, deadline).request(operation, domain: domain, tcp: listener)
            }
        } catch let failure as XVMClient.Failure {
            report(result: "failed: \(failure)", code: nil)
            return .failure
        }
        let result: String = switch ResponseCode(rawValue: code) {
        case .success: action == .status ? "on" : "done"
        case .off: "off"
        case .failure: "failed"
        case .permissionDenied: "permission denied"
        default: "unknown response \(code)"
        }
        report(result: result, code: code)
        return code == 0 ? .success : .response(code)
    }

    /// The request's op code for the action (the wire's numbers, FenceCore's names).
    private var operation: FenceOperation {
        switch action {
        case .off: .off
        case .on: .on
        case .reboot: .reboot
        case .status: .status
        }
    }

    private func client(_ security: ListenerSecurity, _ deadline: ContinuousClock.Instant) throws -> XVMClient {
        XVMClient(key: try KeyFile.load(security), hash: max(security.minimumHash, .sha256), auth: security.auth, deadline: deadline)
    }

    private func report(result: String, code: UInt8?) {
        if json {
            let members: [(String, JSON)] = [
                ("domain", .string(domain)), ("action", .string(action.rawValue)), ("result", .string(result)),
                ("code", code.map { .integer($0) } ?? .null),
            ]
            print(String(decoding: JSON.object(members).encoded(), as: UTF8.self))
        } else {
            print("\(action.rawValue) \(domain): \(result)")
        }
    }
}
