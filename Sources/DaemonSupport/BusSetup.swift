import AMQP
import BusClient
import FenceBus
import FenceConfig
import Logging

/// How a daemon joins the bus from its `backends/amqp` settings.
public enum BusSetup {
    /// Reads the bus key and the broker password, and starts connecting to the broker.
    public static func endpoint(settings: BusSettings, sender: String, containerID: String, logger: Logger) throws(StartupError) -> BusEndpoint {
        let (key, configuration) = try prepare(settings, containerID: containerID)
        let connection: AMQPConnection
        do {
            connection = try AMQPConnection(configuration: configuration, logger: logger)
        } catch {
            throw StartupError(.configuration, "backends/amqp: \(error.message)")
        }
        return BusEndpoint(
            sender: sender, connection: connection,
            addresses: BusAddresses(profile: AddressProfile.named(settings.addressProfile) ?? .rabbitMQ3),
            key: key, clockTolerance: settings.clockTolerance, logger: logger
        )
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
            configuration = try AMQPConfiguration(url: settings.url, tls: tls, containerID: containerID)
        } catch {
            throw StartupError(.configuration, "\(settings.urlLocation.map { "\($0)" } ?? "backends/amqp/url"): \(error.message)")
        }
        if let user = settings.user { configuration.user = user }
        if let file = settings.passwordFile {
            let password = try SecretFile.read(file, what: "broker password file", origin: "backends/amqp/password_file")
            configuration.password = String(decoding: password, as: UTF8.self).trimmingCharacters()
        }
        configuration.mechanisms = [AMQPConfiguration.SASLMechanism(rawValue: settings.saslMechanism) ?? .plain]
        configuration.allowInsecurePlain = settings.allowInsecurePlain
        do {
            try configuration.validate()
        } catch {
            throw StartupError(.configuration, "backends/amqp: \(error.message)")
        }
        return (key, configuration)
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
                    throw StartupError(.backend, "cannot reach the broker at \(configuration.host):\(configuration.port) (start with -w to wait for it)")
                }
                logger.warning("waiting for the broker", metadata: ["broker": "\(configuration.host):\(configuration.port)"])
            }
        }
    }
}
