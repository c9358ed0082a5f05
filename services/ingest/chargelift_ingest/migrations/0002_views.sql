-- Query surfaces on top of the narrow table (plain PostgreSQL; TimescaleDB: see 0003).

-- The seed's wide shape: one row per charger and distinct reading time, every column
-- carrying its last value forward (change-only data holds until the next reading).
CREATE VIEW ev_readings AS
WITH t AS (
    SELECT charger, time,
           max(value_text) FILTER (WHERE field = 'OperationState')          AS operationstate,
           max(value_num)  FILTER (WHERE field = 'TotalEnergyConsumption')  AS totalenergyconsumption,
           max(value_num)  FILTER (WHERE field = 'PowerOutput')             AS poweroutput,
           max(value_num)  FILTER (WHERE field = 'OutputCurrent')           AS outputcurrent,
           max(value_num)  FILTER (WHERE field = 'MaximumOutputCurrent')    AS maximumoutputcurrent,
           bool_or(value_bool) FILTER (WHERE field = 'ConnectedVehicle')    AS connectedvehicle,
           max(value_num)  FILTER (WHERE field = 'SessionEnergy')           AS sessionenergy,
           max(value_num)  FILTER (WHERE field = 'EnergyPrice')             AS energyprice,
           count(*) FILTER (WHERE field = 'OperationState')                 AS n_state,
           count(*) FILTER (WHERE field = 'TotalEnergyConsumption')         AS n_total,
           count(*) FILTER (WHERE field = 'PowerOutput')                    AS n_power,
           count(*) FILTER (WHERE field = 'OutputCurrent')                  AS n_current,
           count(*) FILTER (WHERE field = 'MaximumOutputCurrent')           AS n_max,
           count(*) FILTER (WHERE field = 'ConnectedVehicle')               AS n_vehicle,
           count(*) FILTER (WHERE field = 'SessionEnergy')                  AS n_session,
           count(*) FILTER (WHERE field = 'EnergyPrice')                    AS n_price
      FROM readings
     WHERE field IN ('OperationState', 'TotalEnergyConsumption', 'PowerOutput', 'OutputCurrent',
                     'MaximumOutputCurrent', 'ConnectedVehicle', 'SessionEnergy', 'EnergyPrice')
     GROUP BY charger, time
), g AS (
    -- A running count per column numbers the "value groups"; every row of a group
    -- takes the value of the group's first row: the carry-forward.
    SELECT t.*,
           sum(n_state)   OVER w AS g_state,   sum(n_total)   OVER w AS g_total,
           sum(n_power)   OVER w AS g_power,   sum(n_current) OVER w AS g_current,
           sum(n_max)     OVER w AS g_max,     sum(n_vehicle) OVER w AS g_vehicle,
           sum(n_session) OVER w AS g_session, sum(n_price)   OVER w AS g_price
      FROM t
    WINDOW w AS (PARTITION BY charger ORDER BY time)
)
SELECT time, charger,
       (first_value(operationstate) OVER (PARTITION BY charger, g_state ORDER BY time))::operation_state
           AS operationstate,
       first_value(totalenergyconsumption) OVER (PARTITION BY charger, g_total ORDER BY time)
           AS totalenergyconsumption,
       first_value(poweroutput)  OVER (PARTITION BY charger, g_power   ORDER BY time) AS poweroutput,
       first_value(outputcurrent) OVER (PARTITION BY charger, g_current ORDER BY time)
           AS outputcurrent,
       first_value(maximumoutputcurrent) OVER (PARTITION BY charger, g_max ORDER BY time)
           AS maximumoutputcurrent,
       first_value(connectedvehicle) OVER (PARTITION BY charger, g_vehicle ORDER BY time)
           AS connectedvehicle,
       first_value(sessionenergy) OVER (PARTITION BY charger, g_session ORDER BY time)
           AS sessionenergy,
       first_value(energyprice)  OVER (PARTITION BY charger, g_price   ORDER BY time) AS energyprice
  FROM g;

COMMENT ON VIEW ev_readings IS
  'The seed''s wide shape: one row per charger and reading time, values carried forward.';
