'use strict';
// The clinic schema as a sequelize-cli migration (up(queryInterface,
// Sequelize)), run by Umzug, the library sequelize-cli runs them with.

module.exports = {
  async up(queryInterface, Sequelize) {
    await queryInterface.createTable('patients', {
      id: { type: Sequelize.UUID, primaryKey: true, allowNull: false,
        defaultValue: Sequelize.literal('gen_random_uuid()') },
      ssn: { type: Sequelize.STRING(11), allowNull: false, unique: true },
      first_name: { type: Sequelize.STRING(100), allowNull: false },
      last_name: { type: Sequelize.STRING(100), allowNull: false },
      birthdate: { type: Sequelize.DATEONLY, allowNull: false },
      address: { type: Sequelize.TEXT },
      marital: { type: Sequelize.STRING(1) },
      gender: { type: Sequelize.STRING(1), allowNull: false },
      created_at: { type: Sequelize.DATE, allowNull: false, defaultValue: Sequelize.fn('now') },
    });
    await queryInterface.createTable('encounters', {
      id: { type: Sequelize.INTEGER, primaryKey: true, autoIncrement: true },
      patient_id: { type: Sequelize.UUID, allowNull: false,
        references: { model: 'patients', key: 'id' }, onDelete: 'CASCADE', onUpdate: 'CASCADE' },
      code: { type: Sequelize.STRING(20), allowNull: false },
      description: { type: Sequelize.TEXT },
      started_at: { type: Sequelize.DATE, allowNull: false },
    });
    await queryInterface.addIndex('encounters', ['started_at']);
  },

  async down(queryInterface) {
    await queryInterface.dropTable('encounters');
    await queryInterface.dropTable('patients');
  },
};
