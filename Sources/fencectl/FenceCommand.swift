import ArgumentParser
import DaemonSupport
import FenceBus
import FenceConfig
import FenceCore
import FenceWire
import JSONValue

struct FenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fence",
        abstract: "Send a fence request through the router, as a guest's fence_xvm would.",
        discussion: """
            A test path for operators without a guest at hand. The request goes to the first listener of the \
            configuration file, signed with its key: to the multicast group (leaving by the listener's interface, \
            looped back to a router on this host, called back on this host's address there), or to the tcp \
            listener. Exit status as fence_xvm's: 0 done (status: on), 1 failed, 2 off, 3 permission denied.
            """
    )

    @Argument(help: ArgumentHelp("The domain's name or UUID.", valueName: "domain"))
    var domain: String

    @Option(help: "What to do to the domain.")
    var action: FenceAction

    @OptionGroup var file: ConfigFileOption

    @Option(help: "Which listener of the file to use (default: the first one it lists).")
    var via: ListenerKind?

    @Option(help: ArgumentHelp("Give up after this many seconds, as fence_xvm's -t.", valueName: "seconds"))
    var timeout = 30

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let configuration = try RouterConfiguration(document: ConfigurationFile.load(file.configFile))
        let kind = via ?? configuration.daemon.listeners[0]
        let deadline = ContinuousClock.now + .seconds(timeout)
        let code: UInt8
        do {
            switch kind {
            case .multicast:
                guard let listener = configuration.multicastListeners.first else { throw ValidationError("\(file.configFile) has no multicast listener") }
                code = try client(listener.security, deadline).request(operation, domain: domain, multicast: listener)
            case .tcp:
                guard let listener = configuration.tcpListeners.first else { throw ValidationError("\(file.configFile) has no tcp listener") }
                code = try client(listener.security, deadline).request(operation, domain: domain, tcp: listener)
            }
        } catch let failure as XVMClient.Failure {
            report(result: "failed: \(failure)", code: nil)
            throw ExitCode.failure
        }
        let result: String = switch ResponseCode(rawValue: code) {
        case .success: action == .status ? "on" : "done"
        case .off: "off"
        case .failure: "failed"
        case .permissionDenied: "permission denied"
        default: "unknown response \(code)"
        }
        report(result: result, code: code)
        if code != 0 { throw ExitCode(Int32(code)) }
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

extension FenceAction: ExpressibleByArgument {}
extension ListenerKind: ExpressibleByArgument {}
