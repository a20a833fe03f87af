import AMQP
import Cryptography
import DaemonSupport
import FenceBus
import FenceConfig
import Logging

/// Who signs what an endpoint publishes.
public enum BusSigner: Sendable {
    /// A daemon: its host or router id, with `identity_key_file`.
    case daemon(name: String, role: BusRole)
    /// An operator, with a key of their own.
    case `operator`(name: String, keyFile: String)
}

/// How a daemon joins the bus from its `backends/amqp` settings.
public enum BusSetup {
    /// Reads the bus key, the signer's key and the broker password, and starts connecting to the broker.
    public static func endpoint(settings: BusSettings, signer: BusSigner, containerID: String, logger: Logger) throws(StartupError) -> BusEndpoint {
        let (key, configuration) = try prepare(settings, containerID: containerID)
        let identity = try identity(of: signer, settings: settings)
        let connection: AMQPConnection
        do {
            connection = try AMQPConnection(configuration: configuration, logger: logger)
        } catch {
            throw StartupError(.configuration, "backends/amqp: \(error.message)")
        }
        return BusEndpoint(
            identity: identity, connection: connection,
            addresses: BusAddresses(profile: addressProfile(settings.addressProfile)),
            key: key, trust: TrustDirectory(path: settings.trustDirectory, logger: logger),
            clockTolerance: settings.clockTolerance, logger: logger
        )
    }

    /// The signer's private key, read and checked (0600, an Ed25519 PEM key).
    public static func identity(of signer: BusSigner, settings: BusSettings) throws(StartupError) -> BusIdentity {
        let name: String, file: String, origin: String, create: String, role: BusRole
        switch signer {
        case .daemon(let daemon, let daemonRole):
            (name, file, origin, role) = (daemon, settings.identityKeyFile, "backends/amqp/identity_key_file", daemonRole)
            create = "fencectl keygen --\(role.rawValue) \(daemon) \(file), and its .pub into every \(role == .host ? "router" : "host")'s \(settings.trustDirectory)/\(role.directory)/"
        case .operator(let person, let keyFile):
            (name, file, origin, role) = (person, keyFile, "--operator-key", .operator)
            create = "fencectl keygen --operator \(person) \(keyFile), and its .pub into every router's \(settings.trustDirectory)/operators/"
        }
        guard BusIdentity.isValidName(name) else {
            throw StartupError(.configuration, "\(name) cannot sign on the bus: a name holds only letters, digits, '-', '_' and '.', at most 64")
        }
        let pem = try SecretFile.read(file, what: "identity key", origin: origin, create: create)
        do {
            return BusIdentity(role: role, name: name, key: try SigningKey(pem: pem))
        } catch {
            throw StartupError(.keyFile, "identity key \(file) (\(origin)): \(error.message)")
        }
    }

    /// Everything that can be known before connecting: the bus key, the broker password, and
    /// connection settings that validate (TLS files readable, no PLAIN in clear text).
    public static func prepare(_ settings: BusSettings, containerID: String) throws(StartupError) -> (BusKey, AMQPConfiguration) {
        let keyOrigin = settings.busKeyLocation.map { "set at \($0)" } ?? "backends/amqp/bus_key_file"
        let keyBytes = try SecretFile.read(
            settings.busKeyFile, what: "bus key", origin: keyOrigin,
            create: "fencectl keygen --bytes 64 \(settings.busKeyFile) (the same file on every host)"
        )
        let key: BusKey
        do {
            key = try BusKey(fileContents: keyBytes)
        } catch {
            throw StartupError(.keyFile, "bus key \(settings.busKeyFile) (\(keyOrigin)): \(error.message)")
        }
        var configuration: AMQPConfiguration
        do {
            let tls = settings.tlsCAFile.map {
                AMQPConfiguration.TLS(caFile: $0, certificateFile: settings.tlsCertificateFile, keyFile: settings.tlsKeyFile)
            }
            configuration = try AMQPConfiguration(urls: settings.urls, tls: tls, containerID: containerID)
        } catch {
            throw StartupError(.configuration, "\(settings.urlLocation.map { "\($0)" } ?? "backends/amqp/url"): \(error.message)")
        }
        if let user = settings.user { configuration.user = user }
        if let file = settings.passwordFile {
            let password = try SecretFile.read(file, what: "broker password file", origin: "backends/amqp/password_file")
            configuration.password = String(decoding: password, as: UTF8.self).trimmingCharacters()
        }
        configuration.mechanisms = [mechanism(settings.saslMechanism)]
        configuration.allowInsecurePlain = settings.allowInsecurePlain
        configuration.maximumMessageSize = settings.maximumMessageSize
        do {
            try configuration.validate()
        } catch {
            throw StartupError(.configuration, "backends/amqp: \(error.message)")
        }
        return (key, configuration)
    }

    private static func mechanism(_ setting: BusSettings.SASLMechanism) -> AMQPConfiguration.SASLMechanism {
        switch setting {
        case .plain: .plain
        case .external: .external
        case .anonymous: .anonymous
        }
    }

    private static func addressProfile(_ setting: BusSettings.AddressProfileName) -> AddressProfile {
        switch setting {
        case .rabbitmq3: .rabbitMQ3
        }
    }

    /// Waits for the broker: ten seconds, or (with `-w`) until it answers.
    public static func waitForBroker(_ endpoint: BusEndpoint, wait: Bool, logger: Logger) async throws {
        let configuration = endpoint.connection.configuration
        while true {
            do {
                try await endpoint.connection.waitUntilConnected(deadline: .now + .seconds(10))
                return
            } catch {
                guard wait else {
                    throw StartupError(.backend, "cannot reach the broker at \(configuration.brokerList) (start with -w to wait for it)")
                }
                logger.warning("waiting for the broker", metadata: ["broker": "\(configuration.brokerList)"])
            }
        }
    }
}
