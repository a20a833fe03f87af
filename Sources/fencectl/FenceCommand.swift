import ArgumentParser
import DaemonSupport
import FenceBus
import FenceConfig
import FenceWire

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

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case off, on, reboot, status

        var operation: FenceOperation {
            switch self {
            case .off: .off
            case .on: .on
            case .reboot: .reboot
            case .status: .status
            }
        }
    }

    enum Listener: String, ExpressibleByArgument, CaseIterable {
        case multicast, tcp
    }

    @Argument(help: ArgumentHelp("The domain's name or UUID.", valueName: "domain"))
    var domain: String

    @Option(help: "off, on, reboot or status.")
    var action: Action

    @Option(name: .customShort("f"), help: ArgumentHelp("The configuration file with the listener and its key.", valueName: "file"))
    var configFile = "/etc/fence_virt.conf"

    @Option(help: "Which listener of the file to use (default: the first one it lists).")
    var via: Listener?

    @Option(help: ArgumentHelp("Give up after this many seconds, as fence_xvm's -t.", valueName: "seconds"))
    var timeout = 30

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let configuration = try RouterConfiguration(document: ConfigurationFile.load(configFile))
        let kind = via.map { ListenerKind(rawValue: $0.rawValue)! } ?? configuration.daemon.listeners[0]
        let deadline = ContinuousClock.now + .seconds(timeout)
        let code: UInt8
        do {
            switch kind {
            case .multicast:
                guard let listener = configuration.multicastListeners.first else { throw ValidationError("\(configFile) has no multicast listener") }
                code = try client(listener.security, deadline).request(action.operation, domain: domain, multicast: listener)
            case .tcp:
                guard let listener = configuration.tcpListeners.first else { throw ValidationError("\(configFile) has no tcp listener") }
                code = try client(listener.security, deadline).request(action.operation, domain: domain, tcp: listener)
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
